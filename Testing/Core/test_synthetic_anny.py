"""Bodies from the anny body model: shapes, CT poses, anatomically right landmarks, exact mirror, CT volumes, synth."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("anny", reason='the anny body model is not installed (pip install "landmark-detector[train]")')

from LandmarkDetectorLib import cli  # noqa: E402
from LandmarkDetectorLib.markups import read_markups  # noqa: E402
from LandmarkDetectorLib.synthetic import anny_body, dataset  # noqa: E402
from LandmarkDetectorLib.synthetic.anatomy import BODY_LANDMARKS  # noqa: E402
from LandmarkDetectorLib.synthetic.mesh import voxelize_mesh  # noqa: E402
from LandmarkDetectorLib.synthetic.scan import CTScanConfig  # noqa: E402

FAST_CT = CTScanConfig(in_plane_mm=(4.0, 5.0), slice_mm=(4.0, 5.0), p_cut=0.0)
SKIN = ("HeadTop", "MiddleFingerTipR", "MiddleFingerTipL", "BigToeR", "BigToeL")
_NEAR = np.concatenate([np.eye(3), -np.eye(3),
                        np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) / np.sqrt(3)])


@pytest.fixture(scope="module")
def bodies() -> anny_body.AnnyBodies:
    return anny_body.sample_anny_bodies(np.random.default_rng(2026), 64)


def _index(name: str) -> int:
    return BODY_LANDMARKS.index(name)


def _inside(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Winding-number inside test of each point (a one-voxel grid centred on it)."""
    out = []
    for p in np.atleast_2d(points):
        ijk_to_ras = np.eye(4)
        ijk_to_ras[:3, 3] = p
        out.append(bool(voxelize_mesh(vertices, faces, ijk_to_ras, (1, 1, 1))[0, 0, 0]))
    return np.array(out)


def _family(bodies: anny_body.AnnyBodies, hand: str) -> list[tuple[int, int]]:
    """(body, side index 0 = R / 1 = L) of the arms whose hand is placed as ``hand``."""
    return [(b, k) for b, info in enumerate(bodies.info) for k in range(2) if info["hands"][k] == hand]


def test_reproducible_from_the_seed() -> None:
    a = anny_body.sample_anny_bodies(np.random.default_rng(5), 3)
    b = anny_body.sample_anny_bodies(np.random.default_rng(5), 3)
    c = anny_body.sample_anny_bodies(np.random.default_rng(6), 3)
    np.testing.assert_array_equal(a.vertices_ras, b.vertices_ras)
    np.testing.assert_array_equal(a.landmarks_ras, b.landmarks_ras)
    assert a.info == b.info
    assert not np.allclose(a.landmarks_ras, c.landmarks_ras)
    assert a.vertices_ras.dtype == np.float32 and a.vertices_ras.shape[0] == 3 and a.faces.shape[1] == 3


def test_adults_of_both_sexes_with_thin_and_obese_tails(bodies) -> None:
    heights = np.array([i["height_mm"] for i in bodies.info])
    bmis = np.array([i["bmi"] for i in bodies.info])
    assert heights.min() >= 1450.0 - 0.1 and heights.max() <= 2000.0 + 0.1
    assert bmis.min() >= 16.0 and bmis.max() <= 48.0
    assert (bmis < 18.5).sum() >= 2 and (bmis > 35.0).sum() >= 2  # the tails are there
    assert {i["sex"] for i in bodies.info} == {"male", "female"}
    # Height and BMI are measured on the mesh: its volume x density is the reported weight (posing changes the
    # volume of a skinned mesh only a little).
    v = bodies.vertices_ras.astype(np.float64) * 1e-3
    volume = anny_body._mesh_volume_m3(v, bodies.faces)
    weight = np.array([i["weight_kg"] for i in bodies.info])
    np.testing.assert_allclose(volume * anny_body.TISSUE_DENSITY_KG_M3, weight, rtol=0.05)
    np.testing.assert_allclose(weight / (heights / 1e3) ** 2, bmis, rtol=3e-3)  # all three rounded


def test_every_pose_family_occurs(bodies) -> None:
    assert set(Counter(i["arms"] for i in bodies.info)) == set(anny_body.ARM_FAMILIES)
    hands = {h for i in bodies.info for h in i["hands"]}
    assert set(anny_body.HAND_PLACES) <= hands
    assert {"raised", "crossed", "behind"} <= hands
    assert any(i["prone"] for i in bodies.info) and not all(i["prone"] for i in bodies.info)
    assert max(max(i["knee_flexion_deg"]) for i in bodies.info) > 15.0


def test_hands_are_where_the_pose_puts_them(bodies) -> None:
    lm = bodies.landmarks_ras
    tips = [_index("MiddleFingerTipR"), _index("MiddleFingerTipL")]
    shoulders = [_index("ShoulderR"), _index("ShoulderL")]
    for b, k in _family(bodies, "raised") + _family(bodies, "crossed"):  # above the head
        assert lm[b, tips[k], 2] > lm[b, _index("HeadTop"), 2]
    for b, k in _family(bodies, "crossed") + _family(bodies, "behind"):  # the fingertips cross the midline
        assert lm[b, tips[k], 0] * (1 if k == 0 else -1) < -20.0
        assert lm[b, tips[k], 2] > lm[b, _index("HeadTop"), 2] - 300.0
    for b, k in _family(bodies, "away"):  # the arm abducted: the fingertip well lateral of the shoulder, below it
        sign = 1.0 if k == 0 else -1.0
        assert sign * (lm[b, tips[k], 0] - lm[b, shoulders[k], 0]) > 50.0, (b, k)
        assert lm[b, tips[k], 2] < lm[b, shoulders[k], 2] - 400.0, (b, k)
    for place in ("thigh", "groin", "belly", "chest"):  # on the front of the body
        for b, k in _family(bodies, place):
            assert lm[b, tips[k], 1] > lm[b, shoulders[k], 1] + 30.0, (place, b, k)
    # Beside the thigh: lateral of the thigh's skin at the fingertip's height.
    model = anny_body.anny_model()
    weights, indices = model.skin_weights
    beside = _family(bodies, "beside")
    assert len(beside) >= 10
    for b, k in beside:
        side = "RL"[k]
        thigh_bones = [model.bone(f"upperleg0{n}.{side}") for n in (1, 2)]
        thigh = (weights * np.isin(indices, thigh_bones)).sum(axis=1) > 0.5
        tip = lm[b, tips[k]]
        level = thigh & (np.abs(bodies.vertices_ras[b, :, 2] - tip[2]) < 30.0)
        if level.any():
            sign = 1.0 if k == 0 else -1.0
            assert sign * tip[0] > (sign * bodies.vertices_ras[b, level, 0]).max() - 5.0, (b, side)


def test_skin_landmarks_on_the_skin_and_joint_centres_inside(bodies) -> None:
    buried = []
    for b in range(len(bodies)):
        v, lm = bodies.vertices_ras[b], bodies.landmarks_ras[b]
        for name in SKIN:  # a skin vertex, on the surface of the union of the body's parts (within 2 mm)
            assert np.linalg.norm(v - lm[_index(name)], axis=1).min() < 1e-3
            if _inside(v, bodies.faces, lm[_index(name)] + 2.0 * _NEAR).all():
                buried.append((b, name, bodies.info[b]["hands"]))
        joints = [_index(n) for n in anny_body.RULE_LANDMARKS]
        assert _inside(v, bodies.faces, lm[joints]).all(), (b, bodies.info[b])
        # Shoulders, knees and toes lie on their own side; fingertips too unless the pose crosses the midline.
        for right, left in (("ShoulderR", "ShoulderL"), ("KneeR", "KneeL"), ("BigToeR", "BigToeL")):
            assert lm[_index(right), 0] > 0.0 > lm[_index(left), 0]
        for k, name in enumerate(("MiddleFingerTipR", "MiddleFingerTipL")):
            if bodies.info[b]["hands"][k] in ("beside", "thigh"):
                assert lm[_index(name), 0] * (1 if k == 0 else -1) > 0.0
    # Only a few fingertips pressed into the other hand or the body may end more than 2 mm inside (hands crossing
    # over the belly or groin); never the head top or a toe.
    assert len(buried) <= 0.05 * 2 * len(bodies), buried
    assert all(name.startswith("MiddleFingerTip") for _, name, _ in buried), buried


def test_head_top_is_the_top_of_the_head(bodies) -> None:
    head = anny_body.anny_model().head_vertices
    top = bodies.landmarks_ras[:, _index("HeadTop"), 2]
    # DESIGN: the most superior skin point of the head, also when the head is tilted (up to 12 degrees).
    np.testing.assert_allclose(top, bodies.vertices_ras[:, head, 2].max(axis=1), atol=1e-3)
    assert np.all(top > bodies.landmarks_ras[:, _index("ShoulderR"), 2] + 150.0)


def test_joint_centres_sit_in_their_joints(bodies) -> None:
    # The calibrated offsets apply in full except where a raised arm thinned the shoulder (linear blend skinning).
    raised = np.array([i["arms"] in ("raised", "crossed_above_head", "behind_head", "one_raised") for i in bodies.info])
    assert np.all(bodies.rule_pull[:, 2:] == 1.0) and np.all(bodies.rule_pull[~raised] == 1.0)
    assert (bodies.rule_pull < 1.0).mean() < 0.1
    lm = bodies.landmarks_ras
    for side in "RL":
        shoulder, knee = lm[:, _index(f"Shoulder{side}")], lm[:, _index(f"Knee{side}")]
        height = np.array([i["height_mm"] for i in bodies.info])
        assert np.all(shoulder[:, 2] > lm[:, _index(f"Knee{side}"), 2] + 0.4 * height)
        # The rules move the rig joints by the calibrated offsets, scaled with height.
        origins = bodies.rule_origins_ras[:, anny_body.RULE_LANDMARKS.index(f"Knee{side}")]
        offset = np.linalg.norm(knee - origins, axis=1) / bodies.rule_scale
        np.testing.assert_allclose(offset, np.linalg.norm(anny_body.KNEE_RULE), rtol=1e-6)


def test_rules_refit_from_their_own_points(bodies) -> None:
    targets = bodies.landmarks_ras[:, [_index(n) for n in anny_body.RULE_LANDMARKS]]
    shoulder, knee, residuals = anny_body.fit_landmark_rules(bodies, targets)
    np.testing.assert_allclose(shoulder, anny_body.SHOULDER_RULE, atol=1e-6)
    np.testing.assert_allclose(knee, anny_body.KNEE_RULE, atol=1e-6)
    assert residuals.max() < 1e-6
    other = anny_body.rule_landmarks(bodies, np.array([5.0, -3.0, 20.0]), np.array([0.0, 10.0, -40.0]))
    shoulder, knee, residuals = anny_body.fit_landmark_rules(bodies, other)
    np.testing.assert_allclose(shoulder, [5.0, -3.0, 20.0], atol=1e-6)
    np.testing.assert_allclose(knee, [0.0, 10.0, -40.0], atol=1e-6)
    assert np.nanmax(residuals[bodies.rule_pull == 1.0]) < 1e-6


def test_mirror_is_exact(bodies) -> None:
    few = bodies[:6]
    mirrored = anny_body.mirror_bodies(few)
    twice = anny_body.mirror_bodies(mirrored)
    np.testing.assert_array_equal(twice.vertices_ras, few.vertices_ras)
    np.testing.assert_array_equal(twice.faces, few.faces)
    np.testing.assert_array_equal(twice.landmarks_ras, few.landmarks_ras)
    assert twice.info == few.info
    flip = np.array([-1.0, 1.0, 1.0])
    for name in BODY_LANDMARKS:
        partner = name[:-1] + {"R": "L", "L": "R"}[name[-1]] if name[-1] in "RL" and name != "HeadTop" else name
        np.testing.assert_array_equal(mirrored.landmarks_ras[:, _index(name)],
                                      few.landmarks_ras[:, _index(partner)] * flip)
    np.testing.assert_array_equal(mirrored.vertices_ras, few.vertices_ras * flip.astype(np.float32))
    # Still outward-oriented (positive volume), and the rules give the mirrored joint centres.
    volume = anny_body._mesh_volume_m3(mirrored.vertices_ras.astype(np.float64), mirrored.faces)
    assert np.all(volume > 0)
    joints = [_index(n) for n in anny_body.RULE_LANDMARKS]
    np.testing.assert_allclose(anny_body.rule_landmarks(mirrored), mirrored.landmarks_ras[:, joints], atol=1e-9)
    assert [i["hands"][::-1] for i in mirrored.info] == [i["hands"] for i in few.info]
    assert all(i["mirrored"] for i in mirrored.info)


def test_ct_volume_puts_the_landmarks_on_the_body(bodies) -> None:
    prone = next(b for b, i in enumerate(bodies.info) if i["prone"])
    supine = next(b for b, i in enumerate(bodies.info) if not i["prone"] and i["hands"][0] == "belly")
    for b, config in ((prone, FAST_CT), (supine, CTScanConfig(in_plane_mm=(4.0, 5.0), slice_mm=(4.0, 5.0),
                                                              p_cut=0.0, p_oblique=1.0))):
        scan = anny_body.anny_ct_scan(bodies[b], np.random.default_rng(b), config)
        assert scan.info["position"].endswith("P" if bodies.info[b]["prone"] else "S")
        assert scan.info["generator"] == "anny" and scan.info["body"]["bmi"] == bodies.info[b]["bmi"]
        assert scan.in_view.sum() >= 7  # no longitudinal cut; a toe or a raised hand may leave the transverse field
        values = scan.voxels_kji
        assert values.dtype == np.int16 and (values < -900).mean() > 0.5 and (values > -500).sum() > 1000
        ras_to_ijk = np.linalg.inv(scan.ijk_to_ras)
        for name, p in zip(np.array(scan.landmark_names)[scan.in_view], scan.landmarks_ras[scan.in_view],
                           strict=True):
            i, j, k = np.rint(ras_to_ijk[:3, :3] @ p + ras_to_ijk[:3, 3]).astype(int)
            around = values[max(k - 1, 0):k + 2, max(j - 1, 0):j + 2, max(i - 1, 0):i + 2]
            assert (around > -500).any(), name  # body (or, for skin points, next to it)
            if name in anny_body.RULE_LANDMARKS:
                assert values[k, j, i] > -500, name  # joint centres inside


def test_cli_synth_anny_writes_the_layout(tmp_path: Path) -> None:
    args = ["synth", "--anatomy", "body", "--generator", "anny", "--count", "1", "--seed", "3", "-q"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert cli.main(args + ["--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["body_anny_s3_0000.mrk.json", "body_anny_s3_0000.nii.gz"]
    for name in names:  # the same seed writes the same files
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    points = read_markups(tmp_path / "a" / "body_anny_s3_0000.mrk.json")
    assert points.labels == list(BODY_LANDMARKS)
    scan = dataset.synthesize_case("body", 3, 0, generator="anny")
    positions = points.positions_ras()
    assert np.array_equal(np.isfinite(positions).all(axis=1), scan.in_view)  # out of view: undefined
    np.testing.assert_allclose(positions[scan.in_view], scan.landmarks_ras[scan.in_view], atol=1e-3)
    with pytest.raises(SystemExit):
        cli.main(["synth", "--anatomy", "body", "--generator", "other", "--count", "1", "--out", str(tmp_path)])


def test_primitive_generator_unchanged() -> None:
    """The scan code shared with the anny generator leaves the primitive bodies' volumes as they were."""
    scan = dataset.synthesize_case("body", 3, 0, ct_config=CTScanConfig(in_plane_mm=(4.0, 5.0), slice_mm=(4.0, 5.0)))
    assert hashlib.sha256(scan.voxels_kji.tobytes()).hexdigest()[:16] == "6160bc62f3ae51c7"
    assert hashlib.sha256(scan.ijk_to_ras.tobytes()).hexdigest()[:8] == "b5d9f563"
    assert dataset.case_name("body", 7, 3) == "body_s7_0003"
    assert dataset.case_name("body", 7, 3, "anny") == "body_anny_s7_0003"
