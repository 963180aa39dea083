"""Synthetic cases load in Slicer's real MRML (slicer-core) with the landmarks where they were generated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicer
import vtk

from LandmarkDetectorLib.synthetic import dataset
from LandmarkDetectorLib.synthetic.scan import CTScanConfig, MRScanConfig

STATUS_DEFINED, STATUS_UNDEFINED = 2, 0  # vtkMRMLMarkupsNode::PositionDefined / PositionUndefined


def _load(path: Path, node_class: str, storage_class: str):
    """What slicer.util.loadVolume / loadMarkups do underneath (they need the application, absent in slicer-core)."""
    node = slicer.mrmlScene.AddNode(getattr(slicer, node_class)())
    storage = slicer.mrmlScene.AddNode(getattr(slicer, storage_class)())
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1, path
    return node


def _assert_same_image(volume, voxels_kji: np.ndarray, ijk_to_ras: np.ndarray) -> None:
    """Slicer's array and IJK-to-RAS describe the same voxels in space as ours.

    For left-handed direction matrices (reversed slices) Slicer's NIfTI reader may store the array flipped, with a
    matching IJK-to-RAS, so the arrays are compared through space, not index by index.
    """
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    theirs = slicer.util.arrayFromVolume(volume)
    assert sorted(theirs.shape) == sorted(voxels_kji.shape)
    their_to_ours = np.rint(np.linalg.inv(ijk_to_ras) @ slicer.util.arrayFromVTKMatrix(matrix))  # signed permutation
    np.testing.assert_allclose(np.linalg.inv(ijk_to_ras) @ slicer.util.arrayFromVTKMatrix(matrix), their_to_ours,
                               atol=1e-3)
    k, j, i = np.indices(theirs.shape).reshape(3, -1)
    ours = (their_to_ours @ np.stack([i, j, k, np.ones_like(i)]))[:3].astype(int)
    np.testing.assert_array_equal(theirs[k, j, i], voxels_kji[ours[2], ours[1], ours[0]])


@pytest.mark.parametrize(("anatomy", "fmt", "seed"), [("body", "nii.gz", 4), ("body", "nrrd", 11), ("hand", "nrrd", 2)])
def test_case_loads_with_landmarks_inside_the_volume(tmp_path: Path, anatomy: str, fmt: str, seed: int) -> None:
    ct_config = CTScanConfig(in_plane_mm=(5.0, 5.0), slice_mm=(5.0, 5.0), p_cut=0.7)
    mr_config = MRScanConfig(in_plane_mm=(1.5, 1.5), slice_mm=(2.0, 2.0))
    volume_path = dataset.synthesize_dataset(anatomy, 1, seed, tmp_path, fmt=fmt, ct_config=ct_config,
                                             mr_config=mr_config)[0]
    expected = dataset.synthesize_case(anatomy, seed, 0, ct_config=ct_config, mr_config=mr_config)
    volume = _load(volume_path, "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode")
    _assert_same_image(volume, expected.voxels_kji, expected.ijk_to_ras)
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)  # voxel corners, RAS mm
    markups = _load(volume_path.with_name(volume_path.name.replace(f".{fmt}", ".mrk.json")),
                    "vtkMRMLMarkupsFiducialNode", "vtkMRMLMarkupsJsonStorageNode")
    assert markups.GetNumberOfControlPoints() == len(expected.landmark_names)
    for index, (name, point, in_view) in enumerate(zip(expected.landmark_names, expected.landmarks_ras,
                                                         expected.in_view, strict=True)):
        assert markups.GetNthControlPointLabel(index) == name
        status = markups.GetNthControlPointPositionStatus(index)
        assert status == (STATUS_DEFINED if in_view else STATUS_UNDEFINED), name
        if in_view:
            position = [0.0, 0.0, 0.0]
            markups.GetNthControlPointPosition(index, position)
            np.testing.assert_allclose(position, point, atol=0.01)
            assert all(bounds[2 * a] - 1e-6 <= position[a] <= bounds[2 * a + 1] + 1e-6 for a in range(3)), name
