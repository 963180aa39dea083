"""Left hands from the anny body model: adult sizes, palm down, fingertips on the skin in order, closed meshes, MR
volumes, synth layout and training batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("anny", reason='the anny body model is not installed (pip install "landmark-detector[train]")')

from LandmarkDetectorLib import cli  # noqa: E402
from LandmarkDetectorLib.errors import InputError  # noqa: E402
from LandmarkDetectorLib.framing import CanvasSpec  # noqa: E402
from LandmarkDetectorLib.markups import read_markups  # noqa: E402
from LandmarkDetectorLib.projection import auto_threshold  # noqa: E402
from LandmarkDetectorLib.synthetic import anny_hand, dataset  # noqa: E402
from LandmarkDetectorLib.synthetic.anatomy import HAND_LANDMARKS  # noqa: E402
from LandmarkDetectorLib.synthetic.mesh import voxelize_mesh  # noqa: E402
from LandmarkDetectorLib.synthetic.scan import grid_covering  # noqa: E402
from LandmarkDetectorLib.training.data import NO_AUGMENTATION, SyntheticSource  # noqa: E402

BONE = {name: n for n, name in enumerate(anny_hand.BONE_NAMES)}


@pytest.fixture(scope="module")
def hands() -> anny_hand.AnnyHands:
    return anny_hand.sample_anny_hands(np.random.default_rng(2026), 48)


def _mask(hand: anny_hand.AnnyHands, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Voxelized hand (inside mask) on an axis-aligned grid, and its ijk_to_ras."""
    v = hand.vertices_ras[0].astype(np.float64)
    ijk_to_ras, shape = grid_covering(np.eye(3), np.full(3, spacing_mm), v.min(axis=0) - 5, v.max(axis=0) + 5)
    return voxelize_mesh(v, hand.faces, ijk_to_ras, shape), ijk_to_ras


def test_reproducible_from_the_seed() -> None:
    a = anny_hand.sample_anny_hands(np.random.default_rng(5), 2)
    b = anny_hand.sample_anny_hands(np.random.default_rng(5), 2)
    c = anny_hand.sample_anny_hands(np.random.default_rng(6), 2)
    assert np.array_equal(a.vertices_ras, b.vertices_ras) and np.array_equal(a.landmarks_ras, b.landmarks_ras)
    assert a.info == b.info
    assert not np.allclose(a.landmarks_ras, c.landmarks_ras)


def test_adult_hand_sizes_of_both_sexes(hands: anny_hand.AnnyHands) -> None:
    lengths = np.array([i["hand_length_mm"] for i in hands.info])
    assert lengths.min() >= 165.0 and lengths.max() <= 205.0 and np.ptp(lengths) > 20.0
    male = np.array([i["sex"] == "male" for i in hands.info])
    assert 0 < male.sum() < len(male)
    assert 180.0 < np.median(lengths[male]) < 198.0 and 165.0 <= np.median(lengths[~male]) < 182.0  # about 189, 171
    # The posed wrist-to-middle-tip distance: the straight length, shortened only by flexion.
    reach = np.linalg.norm(hands.landmarks_ras[:, HAND_LANDMARKS.index("MiddleTip")], axis=1)
    assert np.all(reach <= lengths + 1.0) and np.all(reach > 0.85 * lengths)
    forearm = np.array([i["forearm_mm"] for i in hands.info])
    assert np.all(-hands.vertices_ras[..., 2].min(axis=1) < forearm + 40.0)  # the cut, allowing for wrist angles


def test_palm_down_fingers_superior_left_hand(hands: anny_hand.AnnyHands) -> None:
    """As hand.py places hands: back of the hand anterior (palm facing posterior), fingers superior, thumb towards
    the patient's left (-R); a left hand (radial x distal = dorsal)."""
    bones = hands.bones_ras
    radial = bones[:, BONE["metacarpal1"], 1] - bones[:, BONE["metacarpal4"], 1]  # index knuckle - little knuckle
    distal = bones[:, BONE["metacarpal2"], 1]  # middle knuckle from the wrist (origin)
    dorsal = np.cross(radial, distal)
    dorsal /= np.linalg.norm(dorsal, axis=1, keepdims=True)
    assert np.all(dorsal[:, 1] > 0.8)  # anterior
    assert np.all(distal[:, 2] > 0.85 * np.linalg.norm(distal, axis=1))
    assert np.all(radial[:, 0] < 0)
    # The palm's skin lies posterior to its bones: the soft tissue of the palm is thicker than the back's.
    for b in range(4):
        hand = hands[b]
        mask, ijk_to_ras = _mask(hand, 1.0)
        centre = (bones[b, BONE["metacarpal2"], 0] + bones[b, BONE["metacarpal2"], 1]) / 2
        i, j, k = np.rint(np.linalg.solve(ijk_to_ras[:3, :3], centre - ijk_to_ras[:3, 3])).astype(int)
        column = np.flatnonzero(mask[k, :, i])
        assert j - column.min() > column.max() - j, b  # more tissue posterior (palm) than anterior (back)


def test_fingertips_on_the_skin_in_order(hands: anny_hand.AnnyHands) -> None:
    tips = hands.landmarks_ras
    # Thumb to little finger across the hand: R grows (the thumb is on the patient's left).
    assert np.all(np.diff(tips[:, 1:, 0], axis=1) > 0)
    assert np.all(tips[:, 0, 0] < tips[:, 2, 0])
    # Each tip is a skin vertex, the most distal one of its finger, and the middle tip the highest long finger's.
    v = hands.vertices_ras.astype(np.float64)
    for b in range(len(hands)):
        assert np.min(np.linalg.norm(v[b][:, None] - tips[b][None], axis=2), axis=0).max() < 1e-3
    assert np.mean(np.argmax(tips[:, 1:, 2], axis=1) == 1) > 0.6
    # On the surface of the filled mesh: inside and outside voxels within 1.5 mm.
    for b in range(3):
        mask, ijk_to_ras = _mask(hands[b], 0.5)
        for point in tips[b]:
            i, j, k = np.rint(np.linalg.solve(ijk_to_ras[:3, :3], point - ijk_to_ras[:3, 3])).astype(int)
            around = mask[k - 3:k + 4, j - 3:j + 4, i - 3:i + 4]
            assert around.any() and not around.all()


def test_thumbs_rest_on_the_coil_with_the_palm(hands: anny_hand.AnnyHands) -> None:
    """Palm down on the coil, no thumb reaches more than THUMB_BELOW_PALM_MM below the palm's and fingers' lowest
    skin (in the palm's frame); drawn poses whose thumb did were turned up (opposition below the drawn 15 degrees)."""
    rig = anny_hand._hand_rig()
    for vertices, info in zip(hands.vertices_ras, hands.info, strict=True):
        to_ras = anny_hand.placement(np.array([info["roll"]]), np.array([info["tilt"]]), np.array([info["pitch"]]))[0]
        dorsal = (vertices[:-1].astype(np.float64) @ to_ras)[:, 2]  # without the cap's centre
        below_mm = dorsal[rig.palm_and_fingers].min() - dorsal[rig.thumb_distal].min()
        assert below_mm <= anny_hand.THUMB_BELOW_PALM_MM + 0.3, info
    assert any(info["thumb_opposition"] < 15.0 for info in hands.info)


def test_meshes_are_closed(hands: anny_hand.AnnyHands) -> None:
    """Every edge has two faces in opposite directions; the voxelized volume matches the mesh's volume."""
    f = hands.faces
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len({tuple(e) for e in edges.tolist()}) == len(edges)
    assert {tuple(e) for e in edges.tolist()} == {tuple(e) for e in edges[:, ::-1].tolist()}
    v = hands.vertices_ras[0].astype(np.float64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0
    mask, _ = _mask(hands[0], 1.0)
    assert 250e3 < volume < 900e3
    assert mask.sum() == pytest.approx(volume, rel=0.03)


def test_mr_volume_has_skin_fat_muscle_and_bones(hands: anny_hand.AnnyHands) -> None:
    scan = anny_hand.anny_mr_scan(hands[1], np.random.default_rng(3))
    assert scan.voxels_kji.dtype == np.int16 and scan.in_view.all()
    assert scan.landmark_names == HAND_LANDMARKS
    assert scan.info["generator"] == "anny" and "hand_length_mm" in scan.info["hand"]
    signal = scan.info["signal"]
    to_ijk = np.linalg.inv(scan.ijk_to_ras)

    def value(point: np.ndarray) -> float:
        i, j, k = np.rint(to_ijk[:3, :3] @ point + to_ijk[:3, 3]).astype(int)
        return float(scan.voxels_kji[k, j, i])

    bone = hands.bones_ras[1, BONE["finger3-1"]]
    marrow = value(bone.mean(axis=0))
    assert marrow > 0.4 * signal  # bright marrow inside the middle finger's proximal phalanx
    between = hands.bones_ras[1, [BONE["metacarpal2"], BONE["metacarpal3"]]].mean(axis=(0, 1))
    assert value(between) < 0.7 * marrow  # muscle between the metacarpals, under the fat layer
    assert value(hands.landmarks_ras[1, 2] + [0.0, 0.0, 15.0]) < 0.2 * signal  # air beyond the tip
    with pytest.raises(InputError):
        anny_hand.anny_mr_scan(hands[:2], np.random.default_rng(0))


def test_mr_fingertips_as_long_as_the_mesh(hands: anny_hand.AnnyHands) -> None:
    """In the MR volume, thresholded as detection does, each finger reaches its tip as the voxelized mesh does: the
    distal phalanx ends in soft tissue (the pulp), not in dark cortex at the skin."""
    rng = np.random.default_rng(4)
    for b in range(6):
        scan = anny_hand.anny_mr_scan(hands[b], rng)
        mask = voxelize_mesh(hands.vertices_ras[b].astype(np.float64), hands.faces, scan.ijk_to_ras,
                             scan.voxels_kji.shape)
        body = scan.voxels_kji >= auto_threshold(scan.voxels_kji)
        k, j, i = np.nonzero(mask)
        inside_ras = np.column_stack([i, j, k]) @ scan.ijk_to_ras[:3, :3].T + scan.ijk_to_ras[:3, 3]
        for tip in scan.landmarks_ras:
            near = np.linalg.norm(inside_ras - tip, axis=1) < 1.5
            assert near.any() and body[k[near], j[near], i[near]].all(), (b, tip)


def test_cli_synth_anny_hands_writes_the_layout(tmp_path: Path) -> None:
    args = ["synth", "--anatomy", "hand", "--generator", "anny", "--count", "1", "--seed", "3", "-q"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert cli.main(args + ["--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["hand_anny_s3_0000.mrk.json", "hand_anny_s3_0000.nii.gz"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    points = read_markups(tmp_path / "a" / "hand_anny_s3_0000.mrk.json")
    assert points.labels == list(HAND_LANDMARKS)
    scan = dataset.synthesize_case("hand", 3, 0, generator="anny")
    np.testing.assert_allclose(points.positions_ras(), scan.landmarks_ras, atol=1e-3)


def test_anny_hands_in_training_batches() -> None:
    spec = CanvasSpec(height=128, width=96, pixel_spacing_mm=3.0)
    batch = SyntheticSource("hand", spec, NO_AUGMENTATION, anny_fraction=1.0).batch(3, np.random.default_rng(0))
    assert batch.inputs.shape == (3, 3, 128, 96) and batch.known.all() and batch.in_view.all()
    silhouette = batch.inputs[:, 0] > 0.5
    for sample in range(3):
        for u, v in batch.uv[sample]:  # within 6 mm of a hand pixel: the 3 mm pixels' centres miss a narrow tip's end
            r0, c0 = int(round(v)), int(round(u))
            assert silhouette[sample, max(r0 - 2, 0):r0 + 3, max(c0 - 2, 0):c0 + 3].any()
