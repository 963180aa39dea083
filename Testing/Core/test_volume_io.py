"""Reading volumes from NRRD, NIfTI, MetaImage and DICOM series into (voxels [k, j, i], ijk_to_ras)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkDetectorLib import geometry
from LandmarkDetectorLib.errors import FileFormatError, InputError
from LandmarkDetectorLib.volume_io import is_volume_path, read_volume, write_volume

from phantoms import make_ijk_to_ras, rotation, write_dicom_series

DIRECTION = rotation((1, 2, 3), 30) @ np.diag([-1.0, 1.0, -1.0])  # oblique and flipped
SHAPE_KJI = (7, 9, 11)


def sample_volume(dtype=np.int16):
    voxels = np.arange(np.prod(SHAPE_KJI)).reshape(SHAPE_KJI).astype(dtype)
    return voxels, make_ijk_to_ras(DIRECTION, (0.7, 1.1, 2.3), SHAPE_KJI, (10.0, -20.0, 30.0))


@pytest.mark.parametrize("suffix", [".nrrd", ".nii", ".nii.gz", ".mha", ".mhd"])
def test_write_read_round_trip(tmp_path, suffix):
    voxels, ijk_to_ras = sample_volume()
    path = tmp_path / f"vol{suffix}"
    write_volume(path, voxels, ijk_to_ras)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.voxels_kji, voxels)
    # NIfTI stores the matrix in float32.
    np.testing.assert_allclose(volume.ijk_to_ras, ijk_to_ras, atol=2e-4)
    assert is_volume_path(path)


def test_itk_geometry_is_lps_and_voxel_order_is_kji(tmp_path):
    """A voxel at index (i, j, k) of an ITK image lands at voxels_kji[k, j, i] and at the ITK point flipped to RAS."""
    voxels, ijk_to_ras = sample_volume()
    image = sitk.GetImageFromArray(voxels)
    origin, spacing, direction = geometry.itk_from_ijk_to_ras(ijk_to_ras)
    image.SetOrigin(origin.tolist())
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(tmp_path / "v.nrrd"))
    volume = read_volume(tmp_path / "v.nrrd")
    for ijk in [(0, 0, 0), (10, 8, 6), (3, 5, 2)]:
        point_lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        np.testing.assert_allclose(geometry.apply_affine(volume.ijk_to_ras, ijk), geometry.lps_to_ras(point_lps),
                                   atol=1e-9)
        assert volume.voxels_kji[ijk[2], ijk[1], ijk[0]] == image[ijk]


def test_dicom_series_folder(tmp_path):
    voxels, _ = sample_volume()
    direction = rotation((0, 0, 1), 12) @ np.diag([-1.0, -1.0, 1.0])  # axial, oblique in-plane, LPS-like
    ijk_to_ras = make_ijk_to_ras(direction, (0.8, 0.9, 2.5), SHAPE_KJI, (0.0, 0.0, 0.0))
    write_dicom_series(tmp_path / "series", voxels, ijk_to_ras)
    volume = read_volume(tmp_path / "series")
    np.testing.assert_array_equal(volume.voxels_kji, voxels)
    np.testing.assert_allclose(volume.ijk_to_ras, ijk_to_ras, atol=1e-4)
    assert is_volume_path(tmp_path / "series")


def test_dicom_folder_with_two_series_reads_the_largest(tmp_path, caplog):
    voxels, ijk_to_ras = sample_volume()
    write_dicom_series(tmp_path / "mixed", voxels, ijk_to_ras, series_uid="1.2.3.4")
    write_dicom_series(tmp_path / "mixed", voxels[:3], ijk_to_ras, series_uid="1.2.3.5", prefix="other")
    volume = read_volume(tmp_path / "mixed")
    assert volume.voxels_kji.shape == SHAPE_KJI
    assert "2 DICOM series" in caplog.text


def test_real_volumes_load(shared_dir):
    for relative, shape in [("totalseg-example-ct/example_ct.nii.gz", (112, 101, 122)),
                            ("totalseg-example-ct/example_ct_sm.nii.gz", (30, 101, 122)),
                            ("totalseg-example-mr/example_mr_sm.nii.gz", (20, 91, 117)),
                            ("afids-mni152-t1w/tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz", (193, 229, 193))]:
        volume = read_volume(shared_dir / "data" / relative)
        assert volume.voxels_kji.shape == shape
        np.testing.assert_allclose(np.abs(np.diag(volume.ijk_to_ras)[:3]), geometry.spacing_mm(volume.ijk_to_ras))


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        read_volume(tmp_path / "nope.nrrd")
    (tmp_path / "text.nrrd").write_text("hello, I am not an image\n")
    with pytest.raises(FileFormatError, match="cannot read"):
        read_volume(tmp_path / "text.nrrd")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileFormatError, match="without DICOM"):
        read_volume(tmp_path / "empty_dir")


def test_a_folder_without_dicom_gives_our_message_only(tmp_path, capfd):
    """ITK's own warning ("No Series were found", printed by its C++ code) stays out of the way of ours."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here\n")
    assert not is_volume_path(tmp_path / "notes")
    with pytest.raises(FileFormatError, match="folder without DICOM series"):
        read_volume(tmp_path / "notes")
    assert "WARNING" not in capfd.readouterr().err
    assert sitk.ProcessObject.GetGlobalWarningDisplay()  # ITK's warnings are back on for everything else


def test_an_empty_file_is_called_empty(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"empty\.nii\.gz is empty \(0 bytes\)"):
        read_volume(tmp_path / "empty.nii.gz")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_files_are_refused(tmp_path, suffix, keep):
    voxels = np.random.default_rng(0).integers(-1000, 1000, size=(20, 30, 40)).astype(np.int16)
    write_volume(tmp_path / f"good{suffix}", voxels, np.eye(4))
    data = (tmp_path / f"good{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(FileFormatError, match="corrupt"):
        read_volume(tmp_path / f"cut{suffix}")


def test_non_scalar_and_2d_images_are_refused(tmp_path):
    rgb = sitk.Image([5, 6, 7], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.nrrd"))
    with pytest.raises(InputError, match="3 components"):
        read_volume(tmp_path / "rgb.nrrd")
    sitk.WriteImage(sitk.Image([5, 6], sitk.sitkInt16), str(tmp_path / "flat.nrrd"))
    with pytest.raises(InputError, match="2D image"):
        read_volume(tmp_path / "flat.nrrd")
    sitk.WriteImage(sitk.Image([5, 6, 7, 2], sitk.sitkInt16), str(tmp_path / "time.nrrd"))
    with pytest.raises(InputError, match="4D image"):
        read_volume(tmp_path / "time.nrrd")


def test_unreadable_file(tmp_path, monkeypatch):
    voxels, ijk_to_ras = sample_volume()
    path = tmp_path / "secret.nrrd"
    write_volume(path, voxels, ijk_to_ras)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: simulate the permission check failing
        monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(FileFormatError, match="permission"):
        read_volume(path)


def test_write_never_overwrites_without_permission(tmp_path):
    voxels, ijk_to_ras = sample_volume()
    path = tmp_path / "v.nrrd"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="already exists"):
        write_volume(path, voxels, ijk_to_ras)
    assert path.read_text() == "precious"
    write_volume(path, voxels, ijk_to_ras, overwrite=True)
    assert read_volume(path).voxels_kji.shape == SHAPE_KJI
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.nrrd"]  # no temporary files left
    with pytest.raises(FileFormatError, match="endings"):
        write_volume(tmp_path / "v.png", voxels, ijk_to_ras)


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_detached_headers_are_written_with_their_data_file_under_its_final_name(tmp_path, suffix):
    voxels, ijk_to_ras = sample_volume()
    path = tmp_path / f"v{suffix}"
    write_volume(path, voxels, ijk_to_ras)
    names = sorted(p.name for p in tmp_path.iterdir())
    data_name = {".nhdr": "v.raw.gz", ".mhd": "v.zraw"}[suffix]
    assert names == sorted(["v" + suffix, data_name])  # no temporary file, no temporary name in the header
    assert data_name in path.read_text(encoding="latin-1")
    np.testing.assert_array_equal(read_volume(path).voxels_kji, voxels)
    path.unlink()
    with pytest.raises(FileExistsError, match=data_name):  # a data file is never replaced without being asked
        write_volume(path, voxels, ijk_to_ras)
    write_volume(path, voxels, ijk_to_ras, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["v" + suffix, data_name])


def test_checksum_of_big_endian_compressed_data_is_computed_in_file_order(tmp_path):
    """A big-endian gzip NRRD reads without a false alarm: its voxels are checked in the file's byte order."""
    import gzip

    voxels, ijk_to_ras = sample_volume(np.float32)
    write_volume(tmp_path / "little.nrrd", voxels, ijk_to_ras)
    header, stream = (tmp_path / "little.nrrd").read_bytes().split(b"\n\n", 1)
    big = gzip.compress(np.frombuffer(gzip.decompress(stream), "<f4").astype(">f4").tobytes())
    (tmp_path / "big.nrrd").write_bytes(header.replace(b"endian: little", b"endian: big") + b"\n\n" + big)
    np.testing.assert_array_equal(read_volume(tmp_path / "big.nrrd").voxels_kji, voxels)


def test_read_voxels_are_writable_and_outlive_the_reader(tmp_path):
    import gc

    voxels = np.random.default_rng(5).integers(-1000, 1000, size=(9, 8, 7), dtype=np.int16)
    write_volume(tmp_path / "v.nrrd", voxels, np.diag([1.0, 1.0, 2.0, 1.0]))
    read = read_volume(tmp_path / "v.nrrd").voxels_kji  # the Volume and its SimpleITK image are dropped here
    gc.collect()
    filler = [np.full(voxels.shape, 7, np.int16) for _ in range(50)]  # reuse of freed memory would show
    np.testing.assert_array_equal(read, voxels)
    read[0, 0, 0] = 123
    assert read[0, 0, 0] == 123 and filler[0][0, 0, 0] == 7
