"""The real-anatomy development sets (scripts/make_real_anatomy_set.py, scripts/real_anatomy.py, scripts/real_hands.py):
the reference landmarks are reproducible and anatomically right, and the volumes have the geometry and layout of
``synth``."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from LandmarkDetectorLib.evaluation import compare_cases
from LandmarkDetectorLib.markups import PointList, read_markups, write_markups
from LandmarkDetectorLib.synthetic.anatomy import HAND_LANDMARKS
from LandmarkDetectorLib.synthetic.scan import landmarks_in_view
from LandmarkDetectorLib.volume_io import read_volume

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import make_real_anatomy_set as make  # noqa: E402
import real_anatomy as ra  # noqa: E402
import real_hands as rh  # noqa: E402

SKIN_POINTS = ("HeadTop", "MiddleFingerTipR", "MiddleFingerTipL", "BigToeR", "BigToeL")
JOINT_CENTRES = ("ShoulderR", "ShoulderL", "KneeR", "KneeL")
CASES = {case.name: case for case in make.CASES}


@pytest.fixture(scope="module")
def data_dir(shared_dir: Path) -> Path:
    folder = shared_dir / "data"
    if not (folder / ra.XCAT_DIR / ra.XCAT_LABEL_ZIP).is_file():
        pytest.skip(f"{folder / ra.XCAT_DIR} not found")
    return folder


@pytest.fixture(scope="module")
def labels(data_dir: Path) -> np.ndarray:
    return ra.read_xcat_labels(data_dir)


@pytest.fixture(scope="module")
def subjects(data_dir: Path, labels: np.ndarray) -> dict[str, ra.Subject]:
    return make.derive_subjects(data_dir, labels)


@pytest.fixture(scope="module")
def built(subjects: dict[str, ra.Subject], labels: np.ndarray) -> dict[str, tuple]:
    """Four cases in memory: mesh50_XCAT (RAS file, table; LPS file, table, head cut off), HRA male (RAS file,
    table), HRA female (RAS file)."""
    names = ("xcat_m50_s5_table_ras", "xcat_m50_s5_table_nohead", "hra_vhm_s5_table_ras", "hra_vhf_s5_ras")
    return {name: make.build_case(CASES[name], subjects[CASES[name].subject],
                                  labels if CASES[name].subject == "xcat_m50" else None) for name in names}


def test_derivation_reproduces_the_committed_landmarks(subjects: dict[str, ra.Subject]) -> None:
    with open(make.REFERENCE_DIR / "landmarks.csv", newline="") as f:
        rows = {(row["subject"], row["name"]): row for row in csv.DictReader(f)}
    assert len(rows) == 9 + 7 + 7
    for key, subject in subjects.items():
        committed = read_markups(make.REFERENCE_DIR / f"{key}.mrk.json")
        assert committed.labels == [r.name for r in subject.references]
        for r in subject.references:
            point = committed.get(r.name)
            assert np.linalg.norm(np.subtract(point.position_ras, r.point_ras)) < 0.1, (key, r.name)
            assert point.description == r.description
            row = rows[(key, r.name)]
            assert np.allclose([float(row[c]) for c in "RAS"], r.point_ras, atol=0.01)
            assert float(row["uncertainty_mm"]) == pytest.approx(r.uncertainty_mm, abs=0.05)


def test_hra_subjects_have_no_shoulder_points(subjects: dict[str, ra.Subject]) -> None:
    """No humerus in the HRA models: the shoulders are left out (unknown), not written as "undefined"."""
    assert [r.name for r in subjects["xcat_m50"].references] == list(ra.LANDMARKS)
    for key in ("hra_vhm", "hra_vhf"):
        assert [r.name for r in subjects[key].references] == [n for n in ra.LANDMARKS if "Shoulder" not in n]


def test_uncertainties_are_small_and_stated(subjects: dict[str, ra.Subject]) -> None:
    for subject in subjects.values():
        for r in subject.references:
            assert ra.SURFACE_MM <= r.uncertainty_mm < 15.0, (subject.key, r.name)
            assert r.description.startswith(f"reference; uncertainty {r.uncertainty_mm:.1f} mm; ")


def test_left_and_right_are_on_their_sides(subjects: dict[str, ra.Subject]) -> None:
    """R > 0 is the patient's right (RAS); paired points mirror each other about the head top's R within 4 cm."""
    for subject in subjects.values():
        points = {r.name: r.point_ras for r in subject.references}
        midline = points["HeadTop"][0]
        for stem in ("Shoulder", "MiddleFingerTip", "Knee", "BigToe"):
            if f"{stem}R" in points:
                right, left = points[f"{stem}R"], points[f"{stem}L"]
                assert right[0] > 50.0 and left[0] < -50.0, (subject.key, stem)
                mirrored = np.array([2 * midline - right[0], right[1], right[2]])
                assert np.linalg.norm(mirrored - left) < 40.0, (subject.key, stem)


def test_shoulder_centres_are_in_the_humeral_head(subjects: dict[str, ra.Subject], labels: np.ndarray) -> None:
    """The sphere centre lies in bone of the 1 mm label map or within 3 mm of it; radius of a humeral head."""
    to_ijk = np.linalg.inv(ra.XCAT_IJK_TO_RAS)
    for name in ("ShoulderR", "ShoulderL"):
        r = subjects["xcat_m50"].reference(name)
        i, j, k = np.rint(r.point_ras @ to_ijk[:3, :3].T + to_ijk[:3, 3]).astype(int)
        around = labels[k - 3:k + 4, j - 3:j + 4, i - 3:i + 4]
        assert (around == ra.XCAT_BONE_LABEL).any(), name
        radius = float(r.method.split("r=")[1].split(" ")[0])
        assert 18.0 < radius < 30.0


def _voxel(point_ras: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    to_ijk = np.linalg.inv(ijk_to_ras)
    return point_ras @ to_ijk[:3, :3].T + to_ijk[:3, 3]


@pytest.mark.slow
def test_landmarks_are_anatomically_right_in_the_volumes(built: dict[str, tuple]) -> None:
    """Skin points: body and air within one voxel. Joint centres: body all around (one voxel)."""
    for name, (voxels, ijk_to_ras, points, _) in built.items():
        body = voxels > -500
        for point in points.points:
            cut = (name, point.label) == ("xcat_m50_s5_table_nohead", "HeadTop")
            assert (point.status == "defined") != cut, (name, point.label)
            if point.status != "defined":
                continue
            i, j, k = np.rint(_voxel(np.array(point.position_ras), ijk_to_ras)).astype(int)
            around = body[max(k - 1, 0):k + 2, max(j - 1, 0):j + 2, max(i - 1, 0):i + 2]
            if point.label in SKIN_POINTS:
                assert around.any() and not around.all(), (name, point.label)
            else:
                assert point.label in JOINT_CENTRES
                assert around.all(), (name, point.label)


@pytest.mark.slow
def test_the_liver_is_on_the_patients_right(built: dict[str, tuple], labels: np.ndarray) -> None:
    """Left and right are not swapped: mean HU of a 30 mm cube at the liver's centre (60 HU) against its mirror
    image across the midline (40 HU soft tissue)."""
    liver_kji = np.argwhere(labels[::4, ::4, ::4] == 5).mean(axis=0) * 4
    liver_ras = ra.XCAT_IJK_TO_RAS[:3, :3] @ liver_kji[::-1] + ra.XCAT_IJK_TO_RAS[:3, 3]
    assert liver_ras[0] > 30.0
    for name in ("xcat_m50_s5_table_ras", "xcat_m50_s5_table_nohead"):  # a RAS and an LPS file
        voxels, ijk_to_ras, _, _ = built[name]

        def mean_hu(centre_ras: np.ndarray) -> float:
            i, j, k = np.rint(_voxel(centre_ras, ijk_to_ras)).astype(int)  # noqa: B023
            return float(voxels[k - 3:k + 4, j - 5:j + 6, i - 5:i + 6].mean())  # noqa: B023

        assert mean_hu(liver_ras) > mean_hu(liver_ras * [-1, 1, 1]) + 10.0, name


@pytest.mark.slow
def test_volumes_have_the_geometry_and_layout_of_synth(built: dict[str, tuple], tmp_path: Path) -> None:
    name = "xcat_m50_s5_table_ras"
    voxels, ijk_to_ras, points, info = built[name]
    assert voxels.dtype == np.int16 and voxels.shape == tuple(info["shape_kji"])
    assert np.allclose(np.linalg.norm(ijk_to_ras[:3, :3], axis=0), [3.0, 3.0, 5.0])
    assert np.allclose(np.diag(ijk_to_ras)[:3], [3.0, 3.0, 5.0])  # a RAS file: i to the right, j to anterior
    make.write_volume(tmp_path / f"{name}.nii.gz", voxels, ijk_to_ras)
    write_markups(tmp_path / f"{name}.mrk.json", points)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.mrk.json", f"{name}.nii.gz"]
    volume = read_volume(tmp_path / f"{name}.nii.gz")
    assert np.allclose(volume.ijk_to_ras, ijk_to_ras, atol=1e-4)
    read_back = read_markups(tmp_path / f"{name}.mrk.json")
    assert read_back.labels == list(ra.LANDMARKS)
    assert np.allclose(read_back.positions_ras(), points.positions_ras(), atol=1e-6)
    head = np.array(read_back.get("HeadTop").position_ras)
    knee = np.array(read_back.get("KneeR").position_ras)
    for offset, inside in ((-20.0, True), (8.0, False)):  # below the vertex is head, above it air
        i, j, k = np.rint(_voxel(head + [0, 0, offset], volume.ijk_to_ras)).astype(int)
        assert (volume.voxels_kji[k, j, i] > -500) == inside
    i, j, k = np.rint(_voxel(knee, volume.ijk_to_ras)).astype(int)
    assert volume.voxels_kji[k, j, i] > 0  # soft tissue or bone of the right knee, not the left


def test_field_of_view_cases(subjects: dict[str, ra.Subject]) -> None:
    """Cut cases mark the cut landmarks undefined; the edge case keeps vertex and toes, 1 mm inside its end slices."""
    subject = subjects["xcat_m50"]
    points = np.array([r.point_ras for r in subject.references])
    expect_out = {"xcat_m50_s5_table_nohead": {"HeadTop"},
                  "xcat_m50_s3_nolegs_ras": {"KneeR", "KneeL", "BigToeR", "BigToeL"}}
    for case in make.CASES:
        if case.subject != "xcat_m50":
            continue
        ijk_to_ras, shape_kji = make.case_grid(case, subject, 100.0 if case.table else 0.0)
        in_view = landmarks_in_view(points, ijk_to_ras, shape_kji)
        out = {r.name for r, ok in zip(subject.references, in_view, strict=True) if not ok}
        assert out == expect_out.get(case.name, set()), case.name
    edge = CASES["xcat_m50_s3_table_edge"]
    ijk_to_ras, shape_kji = make.case_grid(edge, subject, 0.0)
    k = {r.name: _voxel(r.point_ras, ijk_to_ras)[2] for r in subject.references}
    half = 0.5 + 1e-6
    assert shape_kji[0] - 1 < k["HeadTop"] < shape_kji[0] - 1 + half
    assert min(k["BigToeR"], k["BigToeL"]) == pytest.approx(-1.0 / ijk_to_ras[2, 2], abs=1e-6)


def test_missing_reference_landmarks_are_not_evaluated(tmp_path: Path) -> None:
    """HRA files leave the shoulders out: evaluate skips them instead of counting them as out of view."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    reference = read_markups(make.REFERENCE_DIR / "hra_vhf.mrk.json")
    write_markups(truth / "case.mrk.json", reference)
    guess = PointList.from_arrays(list(ra.LANDMARKS), np.zeros((9, 3)))
    write_markups(pred / "case.mrk.json", guess)
    rows, _ = compare_cases({"model": pred}, truth)
    assert sorted(c.landmark for c in rows) == sorted(n for n in ra.LANDMARKS if "Shoulder" not in n)
    assert all(c.truth_in_view for c in rows)


def test_an_existing_case_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    import argparse
    import time

    cases = [CASES[name] for name in list(CASES)[:3]]
    (tmp_path / f"{cases[2].name}.mrk.json").write_text("theirs", encoding="utf-8")  # the last one exists
    built = []

    def build(case):
        built.append(case.name)
        return np.zeros((2, 2, 2), np.int16), np.eye(4), PointList(()), {}

    args = argparse.Namespace(out=tmp_path, overwrite=False)
    assert make._write_cases(cases, args, time.perf_counter(), build) == 1
    assert built == [] and [p.name for p in tmp_path.iterdir()] == [f"{cases[2].name}.mrk.json"]
    assert (tmp_path / f"{cases[2].name}.mrk.json").read_text(encoding="utf-8") == "theirs"


def test_sphere_fit_recovers_a_sphere() -> None:
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(200, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = np.array([10.0, -5.0, 3.0]) + 24.0 * directions
    centre, radius, rms = ra.sphere_fit(points)
    assert np.allclose(centre, [10.0, -5.0, 3.0]) and radius == pytest.approx(24.0) and rms < 1e-9


# ---------------------------------------------------------------- hands (scripts/real_hands.py)

HAND_CASES = {case.name: case for case in make.HAND_CASES}


@pytest.fixture(scope="module")
def hands(data_dir: Path) -> dict[str, rh.HandSubject]:
    return make.derive_hands(data_dir)


def test_hand_derivation_reproduces_the_committed_fingertips(hands: dict[str, rh.HandSubject]) -> None:
    folder = make.HAND_REFERENCE_DIR
    with open(folder / "landmarks.csv", newline="") as f:
        rows = {(row["hand"], row["name"]): row for row in csv.DictReader(f)}
    with open(folder / "placement.csv", newline="") as f:
        maps = {row["hand"]: row for row in csv.DictReader(f)}
    assert sorted(hands) == sorted(maps) == sorted(["xcat_m50_L", "xcat_m50_R", "hra_vhm_L", "hra_vhm_R",
                                                    "hra_vhf_L", "hra_vhf_R"])
    assert len(rows) == 6 * 5
    for key, hand in hands.items():
        committed = read_markups(folder / f"{key}.mrk.json")
        assert committed.labels == list(HAND_LANDMARKS)
        for r in hand.references:
            point = committed.get(r.name)
            assert np.linalg.norm(np.subtract(point.position_ras, r.point_ras)) < 0.1, (key, r.name)
            assert point.description == r.description
            assert np.allclose([float(rows[(key, r.name)][c]) for c in "RAS"], r.point_ras, atol=0.01)
            assert ra.SURFACE_MM <= r.uncertainty_mm < 10.0, (key, r.name)
        m = np.array([float(maps[key][f"m{i}{j}"]) for i in range(3) for j in range(4)]).reshape(3, 4)
        assert np.allclose(m, hand.to_placed[:3], atol=1e-5)
        # One rigid map per hand, with a mirror for the right hands.
        assert np.allclose(m[:, :3] @ m[:, :3].T, np.eye(3), atol=1e-4)
        assert np.linalg.det(m[:, :3]) == pytest.approx(-1.0 if key.endswith("_R") else 1.0, abs=1e-4)


def test_hands_lie_palm_down_with_fingertips_in_order(hands: dict[str, rh.HandSubject]) -> None:
    """Placed as hand.py places hands: fingers superior of the knuckles (the origin), thumb towards the patient's left
    (-R) and proximal to the fingers, index to little finger with growing R; the palm faces posterior (the relaxed
    fingers curl towards the palm: their tips lie posterior to the knuckles)."""
    for key, hand in hands.items():
        tips = np.array([r.point_ras for r in hand.references])
        assert np.all(np.diff(tips[1:, 0]) > 15.0), key
        assert tips[0, 0] < tips[1, 0] - 5.0 and tips[0, 2] < tips[1:, 2].min(), key
        assert np.all(tips[1:, 2] > 10.0), key
        assert np.all(tips[1:, 1] < -5.0), key


def test_xcat_hands_agree_with_the_body_set(hands: dict[str, rh.HandSubject]) -> None:
    """The mesh50_XCAT middle fingertips, mapped back to the phantom, are the body set's MiddleFingerTipL/R."""
    body = read_markups(make.REFERENCE_DIR / "xcat_m50.mrk.json")
    for side in "LR":
        hand = hands[f"xcat_m50_{side}"]
        back = np.linalg.inv(hand.to_placed)
        point = back[:3, :3] @ hand.reference("MiddleTip").point_ras + back[:3, 3]
        assert np.linalg.norm(point - np.array(body.get(f"MiddleFingerTip{side}").position_ras)) < 0.1


@pytest.mark.slow
def test_hand_volumes_have_the_geometry_of_their_files(hands: dict[str, rh.HandSubject], tmp_path: Path) -> None:
    """A mesh50_XCAT hand (bones, axial LPS file) and an HRA hand (skin only, sagittal RAS file): spacing and axes of
    the case, the layout of synth, every fingertip on the skin (hand and air within 1.5 mm)."""
    for name in ("xcat_m50_R_mr0.8_ax", "hra_vhm_R_mr1.2_sag"):
        case = HAND_CASES[name]
        hand = hands[case.subject]
        voxels, ijk_to_ras, points, info = make.build_hand_case(case, hand)
        assert voxels.dtype == np.int16 and voxels.shape == tuple(info["shape_kji"])
        spacing = [case.in_plane_mm, case.in_plane_mm, case.slice_mm]
        assert np.allclose(ijk_to_ras[:3, :3], make.SLICE_AXES[case.orientation] * spacing)
        make.write_volume(tmp_path / f"{name}.nii.gz", voxels, ijk_to_ras)
        write_markups(tmp_path / f"{name}.mrk.json", points)
        volume = read_volume(tmp_path / f"{name}.nii.gz")
        assert np.allclose(volume.ijk_to_ras, ijk_to_ras, atol=1e-4)
        read_back = read_markups(tmp_path / f"{name}.mrk.json")
        assert read_back.labels == list(HAND_LANDMARKS)
        assert all(p.status == "defined" for p in read_back.points)
        labels = make.hand_labels(hand, ijk_to_ras, tuple(info["shape_kji"]))
        assert info["bones"] == (labels >= 3).any() == name.startswith("xcat")
        to_ijk = np.linalg.inv(ijk_to_ras)
        for point in read_back.points:
            i, j, k = np.rint(to_ijk[:3, :3] @ np.array(point.position_ras) + to_ijk[:3, 3]).astype(int)
            di, dk = int(np.ceil(1.5 / case.in_plane_mm)), int(np.ceil(1.5 / case.slice_mm))
            around = labels[k - dk:k + dk + 1, j - di:j + di + 1, i - di:i + di + 1]
            assert around.any() and not around.all(), (name, point.label)
            signal = voxels[k - dk:k + dk + 1, j - di:j + di + 1, i - di:i + di + 1]
            assert signal.max() > 5 * np.median(voxels[labels == 0]), (name, point.label)
