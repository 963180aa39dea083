"""Reading and writing volumes (NRRD, NIfTI, MetaImage, DICOM series) and 2D images through SimpleITK.

The one module of the core that imports SimpleITK. A volume comes back as the pair Slicer uses:
a numpy array indexed ``[k, j, i]`` and its 4x4 ``ijk_to_ras`` matrix.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import geometry
from .errors import FileFormatError, InputError
from .fileio import atomic_path

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
"""File endings read as volumes; a folder is read as a DICOM series."""


@dataclass(frozen=True)
class Volume:
    """A scalar volume: voxels ``[k, j, i]`` and their 4x4 voxel-centre-to-RAS matrix in mm."""

    voxels_kji: NDArray[Any]
    ijk_to_ras: NDArray[np.float64]


def _sitk() -> Any:
    try:
        import SimpleITK as sitk
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise FileFormatError("reading and writing images needs SimpleITK: pip install SimpleITK") from error
    return sitk


def is_volume_path(path: str | os.PathLike[str]) -> bool:
    """True for a file with a volume ending, or a folder that holds DICOM files."""
    p = Path(path)
    if p.is_dir():
        return bool(_sitk().ImageSeriesReader.GetGDCMSeriesIDs(str(p)))
    return p.name.lower().endswith(VOLUME_SUFFIXES)


def case_name(path: str | os.PathLike[str]) -> str:
    """A volume's name without its volume ending ("case.nii.gz" -> "case"; a DICOM folder keeps its name)."""
    name = Path(path).name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a scalar 3D volume from a NRRD/NIfTI/MetaImage file or a DICOM series folder.

    Raises:
        FileFormatError: missing, unreadable or corrupt file; a folder without DICOM series.
        InputError: the image is not a scalar 3D volume (2D, 4D, RGB/vector).
    """
    sitk = _sitk()
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p} does not exist; check the path.")
    if not os.access(p, os.R_OK):
        raise FileFormatError(f"{p} is not readable (permission denied); check its permissions.")
    try:
        image = _read_dicom_series(sitk, p) if p.is_dir() else sitk.ReadImage(str(p))
    except RuntimeError as error:
        raise FileFormatError(
            f"cannot read {p} as an image ({_itk_reason(error)}); the file may be corrupt, truncated or not an image. "
            f"Supported: {', '.join(VOLUME_SUFFIXES)} files and DICOM series folders.") from error
    if p.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_complete(p, image)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{p} has {image.GetNumberOfComponentsPerPixel()} components per voxel (a vector or RGB image); "
            "landmark detection needs a scalar CT or MR volume.")
    if image.GetDimension() != 3:
        raise InputError(f"{p} is a {image.GetDimension()}D image of size {image.GetSize()}; a 3D volume is needed.")
    ijk_to_ras = geometry.ijk_to_ras_from_itk(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    return Volume(voxels_kji=sitk.GetArrayViewFromImage(image).copy(), ijk_to_ras=ijk_to_ras)


def _itk_reason(error: RuntimeError) -> str:
    """The informative line of a SimpleITK exception, without source paths and object addresses."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK appends a stale errno text ("Reason: No such file or directory") to some read failures.
    useful = [line for line in lines if not line.startswith(("Exception thrown", "Reason:")) and ".cxx:" not in line]
    reason = useful[-1] if useful else "unknown error"
    return re.sub(r"^(ITK ERROR: \w+\(0x[0-9a-f]+\): |sitk::ERROR: |\[\w+\] )", "", reason)


def _check_nifti_complete(path: Path, image: Any) -> None:
    """Refuse a truncated NIfTI file: ITK reads one silently and fills the missing voxels with garbage."""
    data_bytes = (int(np.prod(image.GetSize())) * image.GetNumberOfComponentsPerPixel()
                  * image.GetSizeOfPixelComponent())
    compressed = path.name.lower().endswith(".gz")
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
        header = f.read(540)
    vox_offset = _nifti_vox_offset(header)
    expected = vox_offset + data_bytes
    if compressed:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            stored_size = struct.unpack("<I", f.read(4))[0]  # gzip trailer: uncompressed size mod 2**32
        complete = stored_size == expected % 2**32 or _gzip_length(path) >= expected
    else:
        complete = path.stat().st_size >= expected
    if not complete:
        raise FileFormatError(f"{path} is truncated: its header announces {expected} bytes of image data and the "
                              "file holds fewer; the file is corrupt or was not copied completely.")


def _nifti_vox_offset(header: bytes) -> int:
    """Byte offset of the voxel data, from a NIfTI-1 or NIfTI-2 header of either byte order."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            return int(struct.unpack(order + "f", header[108:112])[0])
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            return int(struct.unpack(order + "q", header[168:176])[0])
    return 0


def _gzip_length(path: Path) -> int:
    """Uncompressed length of a (possibly multi-member) gzip file; 0 if the stream is broken."""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return 0
    return total


def _read_dicom_series(sitk: Any, folder: Path) -> Any:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise FileFormatError(f"{folder} is a folder without DICOM series; give a volume file or a DICOM folder.")
    files = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series}
    chosen = max(files, key=lambda sid: len(files[sid]))
    if len(series) > 1:
        logger.warning("%s holds %d DICOM series; reading the largest, %s (%d files).", folder, len(series), chosen,
                       len(files[chosen]))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files[chosen])
    return reader.Execute()


def write_volume(path: str | os.PathLike[str], voxels_kji: ArrayLike, ijk_to_ras: ArrayLike, *,
                 overwrite: bool = False, compress: bool = True) -> None:
    """Write a scalar volume atomically; the format follows the file ending (.nrrd, .nii.gz, .mha...)."""
    sitk = _sitk()
    if not Path(path).name.lower().endswith(VOLUME_SUFFIXES):
        raise FileFormatError(f"cannot write {path}: use one of the endings {', '.join(VOLUME_SUFFIXES)}.")
    array = np.asarray(voxels_kji)
    if array.ndim != 3:
        raise InputError(f"volume must be 3D [k, j, i], got shape {array.shape}.")
    image = sitk.GetImageFromArray(array)
    origin_lps, spacing, direction_lps = geometry.itk_from_ijk_to_ras(geometry.validate_ijk_to_ras(ijk_to_ras))
    image.SetOrigin(origin_lps.tolist())
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction_lps.ravel().tolist())
    with atomic_path(path, overwrite=overwrite) as tmp:
        sitk.WriteImage(image, str(tmp), compress)


def write_png(path: str | os.PathLike[str], image_vu: ArrayLike, *, overwrite: bool = False) -> None:
    """Write a 2D uint8 image (rows v, columns u; RGB as a last axis of 3) to a PNG file atomically."""
    sitk = _sitk()
    array = np.asarray(image_vu)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise InputError(f"PNG needs a 2D uint8 image (or H x W x 3), got {array.dtype} {array.shape}.")
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 3)
    with atomic_path(path, overwrite=overwrite) as tmp:
        sitk.WriteImage(image, str(tmp))
