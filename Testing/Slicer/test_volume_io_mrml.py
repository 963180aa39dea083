"""Our volume reader gives the same (voxels [k, j, i], ijk_to_ras) pair as Slicer's own volume loading."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk

from LandmarkDetectorLib.volume_io import read_volume, write_volume

from phantoms import make_ijk_to_ras, rotation


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
@pytest.mark.parametrize("direction", [np.diag([-1.0, -1.0, 1.0]),
                                       rotation((1, 2, 3), 35) @ np.diag([1.0, -1.0, -1.0])],
                         ids=["lps-axial", "oblique-flipped"])
def test_same_pair_as_slicer(tmp_path, suffix, direction):
    shape_kji = (9, 11, 13)
    voxels = np.random.default_rng(0).integers(-1000, 1000, size=shape_kji).astype(np.int16)
    ijk_to_ras = make_ijk_to_ras(direction, (0.8, 1.25, 3.0), shape_kji, (12.0, -40.0, 7.5))
    path = tmp_path / f"volume{suffix}"
    write_volume(path, voxels, ijk_to_ras)
    ours = read_volume(path)
    # What slicer.util.loadVolume does underneath (it needs the application, which slicer-core lacks).
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    np.testing.assert_array_equal(ours.voxels_kji, slicer.util.arrayFromVolume(node))
    np.testing.assert_allclose(ours.ijk_to_ras, slicer.util.arrayFromVTKMatrix(matrix), atol=1e-4)
