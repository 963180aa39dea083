"""The bad-input catalogue (Testing/Core/test_bad_inputs.py) for the rows that apply to a volume node in Slicer.

``LandmarkDetectorLogic().detect`` must raise the core's error with its message and leave the scene exactly as it
was; the rows that must work add one point list with the fingertips in place. Volumes that are not scalar 3D
images (2D, label maps, vector volumes, no voxels, non-linear transforms) are in test_module_logic.py. This VTK
cannot hold int64 or float16 voxels, so those pixel types have no row here.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from LandmarkDetectorLib import InputError, ModelError
from LandmarkDetectorLib.synthetic.dataset import synthesize_case

SEED = 646_465  # not a training or evaluation seed of the bundled models


@pytest.fixture(scope="module")
def hand():
    """(voxels, IJK-to-RAS, fingertips RAS) of a synthetic hand MR with every second voxel kept."""
    case = synthesize_case("hand", SEED, 0)
    ijk_to_ras = case.ijk_to_ras.copy()
    ijk_to_ras[:3, :3] *= 2
    return np.ascontiguousarray(case.voxels_kji[::2, ::2, ::2]), ijk_to_ras, case.landmarks_ras


def column(index, change):
    def matrix(m):
        m = m.copy()
        m[:3, index] = change(m[:3, index], m)
        return m

    return matrix


def sheared(m):
    m = m.copy()
    m[:3, 1] += np.tan(np.radians(10)) * m[:3, 0] * np.linalg.norm(m[:3, 1]) / np.linalg.norm(m[:3, 0])
    return m


def middle_slices(count):
    return lambda v: np.ascontiguousarray(v[:, :, v.shape[2] // 2:v.shape[2] // 2 + count])


def bead(v):
    out = np.zeros_like(v)
    k, j, i = (n // 2 for n in v.shape)
    out[k - 2:k + 2, j - 2:j + 2, i - 2:i + 2] = 1000
    return out


def nan_padded(v):
    return np.pad(v.astype(np.float32), ((0, 0), (0, 0), (0, 4)), constant_values=np.nan)  # past the last i


KEEP = (lambda v: v, lambda m: m)
ROWS = [  # name, voxels(hand voxels), matrix(hand matrix), error, message fragment
    ("constant volume", lambda v: np.full_like(v, 100), KEEP[1], InputError, "is constant"),
    ("all NaN", lambda v: np.full(v.shape, np.nan, np.float32), KEEP[1], InputError, "no finite voxel values"),
    ("no body (air-only CT)", lambda v: np.random.default_rng(1).normal(-1000, 20, v.shape).astype(np.int16),
     KEEP[1], InputError, "no body found"),
    ("body too small (8 mm bead)", bead, KEEP[1], InputError, "body is too small"),
    ("cut to a slab (3 slices)", middle_slices(3), KEEP[1], InputError, "slab too thin"),
    ("zero spacing", KEEP[0], column(0, lambda c, m: 0 * c), InputError, "non-finite"),
    ("singular direction", KEEP[0], column(1, lambda c, m: m[:3, 0]), InputError, "is singular"),
    ("implausible spacing", KEEP[0], column(2, lambda c, m: c * 1e-6), InputError, "is implausible"),
    ("model file that is not a model", KEEP[0], KEEP[1], ModelError, "not a TorchScript model bundle"),
    ("pixel type uint64", lambda v: v.astype(np.uint64), KEEP[1], None, ""),
    ("pixel type int8", lambda v: (v.astype(np.float64) / v.max() * 127).astype(np.int8), KEEP[1], None, ""),
    ("NaN padding", nan_padded, KEEP[1], None, ""),
    ("non-orthogonal (sheared) grid", KEEP[0], sheared, None, ""),
]


def scene_state():
    """Every node of the scene with its modification time."""
    scene = slicer.mrmlScene
    return [(scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetMTime()) for i in range(scene.GetNumberOfNodes())]


@pytest.mark.parametrize(("name", "voxels", "matrix", "error", "message"), ROWS, ids=[row[0] for row in ROWS])
def test_logic_refuses_bad_volumes_and_keeps_the_scene(module, hand, hand_model, tmp_path, name, voxels, matrix,
                                                       error, message):
    hand_voxels, hand_matrix, truth = hand
    ijk_to_ras = matrix(hand_matrix)
    volume = slicer.util.addVolumeFromArray(voxels(hand_voxels), ijk_to_ras, "Case")
    model = hand_model
    if error is ModelError:
        model = str(tmp_path / "notes.pt")
        (tmp_path / "notes.pt").write_text("not a model")
    before = scene_state()
    logic = module.LandmarkDetectorLogic()
    if error is not None:
        with pytest.raises(error, match=message):
            logic.detect(volume, model=model, device="cpu")
        assert scene_state() == before
        return
    points = logic.detect(volume, model=model, device="cpu")
    assert [node_id for node_id, _ in scene_state()][:len(before)] == [node_id for node_id, _ in before]
    assert points.GetNumberOfControlPoints() == 5
    positions = np.array([points.GetNthControlPointPositionWorld(i) for i in range(5)])
    expected = (ijk_to_ras @ np.linalg.inv(hand_matrix) @ np.c_[truth, np.ones(5)].T).T[:, :3]
    assert np.linalg.norm(positions - expected, axis=1).max() < 8.0
