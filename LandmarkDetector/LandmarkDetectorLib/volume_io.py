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
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import geometry
from .errors import FileFormatError, InputError
from .fileio import atomic_path, check_writable_target

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
        return bool(_dicom_series_ids(_sitk(), p))
    return p.name.lower().endswith(VOLUME_SUFFIXES)


def _dicom_series_ids(sitk: Any, folder: Path) -> tuple[str, ...]:
    """The DICOM series in ``folder``, without ITK's "No Series were found" warning on standard error (our own
    message says it better)."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


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
    if p.is_file() and p.stat().st_size == 0:
        raise FileFormatError(f"{p} is empty (0 bytes): it was not written or copied completely; export or copy it "
                              "again.")
    try:
        image = _read_dicom_series(sitk, p) if p.is_dir() else sitk.ReadImage(str(p))
    except RuntimeError as error:
        raise _read_error(p, str(error)) from error
    if p.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_complete(p, image)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{p} has {image.GetNumberOfComponentsPerPixel()} components per voxel (a vector or RGB image); "
            "landmark detection needs a scalar CT or MR volume.")
    if image.GetDimension() != 3:
        raise InputError(f"{p} is a {image.GetDimension()}D image of size {image.GetSize()}; a 3D volume is needed.")
    ijk_to_ras = geometry.ijk_to_ras_from_itk(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    try:
        geometry.validate_ijk_to_ras(ijk_to_ras)
    except InputError as error:
        raise InputError(f"{p}: {error}") from None
    voxels = np.asarray(_ImageVoxels(image, sitk.GetArrayViewFromImage(image)))
    if p.is_file():
        _check_compressed_data(p, voxels)
    return Volume(voxels_kji=voxels, ijk_to_ras=ijk_to_ras)


class _ImageVoxels:
    """A SimpleITK image's voxel buffer for numpy without a copy: arrays made from it keep the image alive and may
    write to it (``GetArrayViewFromImage`` made the buffer the image's own)."""

    def __init__(self, image: Any, view: NDArray[Any]) -> None:
        self._image = image
        self.__array_interface__ = {**view.__array_interface__, "data": (view.__array_interface__["data"][0], False)}


def _read_error(path: Path, text: str) -> FileFormatError:
    """The error for a file ITK cannot read: what its header gets wrong when ITK says so, else ITK's reason."""
    if "Zero-valued spacing" in text:
        refused = re.search(r"to (\[[^]]*\])", text)
        return FileFormatError(
            f"cannot read {path}: its header gives a zero voxel spacing{f' {refused[1]}' if refused else ''}; "
            "spacings must be positive (NRRD 'space directions', MetaImage 'ElementSpacing'). Fix the header.")
    if "Bad direction" in text:
        refused = re.search(r" to ([-+.\deE\s]+)$", text.strip())
        matrix = f" ({' '.join(refused[1].split())})" if refused else ""
        return FileFormatError(
            f"cannot read {path}: its header gives a singular direction matrix{matrix} (two voxel axes are "
            "parallel or one is zero); fix the direction cosines in the header.")
    if "orthonormal direction cosines" in text:
        return FileFormatError(
            f"cannot read {path}: its NIfTI qform and sform are not orthonormal (a sheared or gantry-tilted grid), "
            "which ITK cannot read from NIfTI; resample the image to an orthogonal grid or save it as NRRD.")
    return FileFormatError(
        f"cannot read {path} as an image ({_itk_reason(text)}); the file may be corrupt, truncated or not an image. "
        f"Supported: {', '.join(VOLUME_SUFFIXES)} files and DICOM series folders.")


def _itk_reason(text: str) -> str:
    """The informative line of a SimpleITK exception, without source paths and object addresses."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # ITK appends a stale errno text ("Reason: No such file or directory") to some read failures.
    useful = [line for line in lines if not line.startswith(("Exception thrown", "Reason:")) and ".cxx:" not in line]
    reason = useful[-1] if useful else "unknown error"
    return re.sub(r"^(ITK ERROR: \w+\(0x[0-9a-f]+\): |sitk::ERROR: |\[\w+\] )", "", reason)


def _check_compressed_data(path: Path, voxels: NDArray[Any]) -> None:
    """Refuse a compressed file (.nii.gz, gzip NRRD, compressed MetaImage) whose voxels do not match the checksum
    stored with them.

    ITK stops reading once it has the voxels and teem (NRRD) and MetaIO do not check the checksum either: a
    damaged file would read as wrong voxels without an error.
    """
    found = _compressed_layout(path)
    if found is None:
        return
    data_path, kind, big_endian, prefix = found
    try:
        with open(data_path, "rb") as f:
            f.seek(-8, os.SEEK_END)
            trailer = f.read(8)
    except OSError:
        return  # a missing or tiny data file fails in ITK's reader already
    data = voxels.byteswap() if big_endian and voxels.dtype.itemsize > 1 else np.ascontiguousarray(voxels)
    if kind == "gzip":  # gzip trailer: CRC-32 and length (mod 2**32) of the uncompressed stream
        crc, size = struct.unpack("<II", trailer)
        if size != (len(prefix) + data.nbytes) % 2**32:
            return  # the stream holds more than the voxels: nothing to compare with
        ok = crc == zlib.crc32(data, zlib.crc32(prefix))
    else:  # zlib stream: Adler-32 of the uncompressed data, big-endian
        ok = struct.unpack(">I", trailer[4:])[0] == zlib.adler32(data)
    if not ok:
        raise FileFormatError(f"{path} is corrupt: its compressed voxel data do not match their checksum (the "
                              "file was damaged on disk or in transfer); copy or export it again.")


def _compressed_layout(path: Path) -> tuple[Path, str, bool, bytes] | None:
    """(data file, "gzip" or "zlib", big-endian, stream bytes before the voxels) of a compressed NIfTI, NRRD or
    MetaImage whose voxels, unscaled, end one compressed stream at the end of one file; None for other files."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        try:
            with gzip.open(path, "rb") as f:
                vox_offset, big_endian, scaled = _nifti_layout(f.read(540))
                if scaled or vox_offset < 0:
                    return None  # ITK returns rescaled values, not the stored ones
                f.seek(0)
                return path, "gzip", big_endian, f.read(vox_offset)
        except (OSError, EOFError, zlib.error):
            return None
    if not name.endswith((".nrrd", ".nhdr", ".mha", ".mhd")):
        return None
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if name.endswith((".nrrd", ".nhdr")):
        header = head.split(b"\n\n", 1)[0].decode("latin-1")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header.splitlines()[1:])
                  if not k.startswith("#")}
        if fields.get("encoding", "").lower() not in ("gzip", "gz") or "byte skip" in fields or "line skip" in fields:
            return None
        detached = fields.get("data file", fields.get("datafile"))
        big_endian = fields.get("endian", "little").lower() == "big"
        kind = "gzip"
    else:
        header = head.split(b"ElementDataFile", 1)
        tail = header[1].split(b"\n", 1)[0] if len(header) > 1 else b""
        text = (header[0] + b"ElementDataFile" + tail).decode("latin-1")
        fields = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in text.splitlines())}
        if fields.get("CompressedData", "").lower() != "true" or "ElementDataFile" not in fields:
            return None
        detached = None if fields["ElementDataFile"] == "LOCAL" else fields["ElementDataFile"]
        big_endian = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "")).lower() == "true"
        kind = "zlib"
    if detached is None:
        return path, kind, big_endian, b""
    if detached.upper().startswith("LIST") or "%" in detached or " " in detached:
        return None  # voxels spread over several files
    return path.parent / detached, kind, big_endian, b""


def _check_nifti_complete(path: Path, image: Any) -> None:
    """Refuse a truncated NIfTI file: ITK reads one silently and fills the missing voxels with garbage."""
    data_bytes = (int(np.prod(image.GetSize())) * image.GetNumberOfComponentsPerPixel()
                  * image.GetSizeOfPixelComponent())
    compressed = path.name.lower().endswith(".gz")
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
        header = f.read(540)
    vox_offset = _nifti_layout(header)[0]
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


def _nifti_layout(header: bytes) -> tuple[int, bool, bool]:
    """(byte offset of the voxel data, big-endian, values rescaled by scl_slope/scl_inter) of a NIfTI-1 or NIfTI-2
    header."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            offset, slope, inter = struct.unpack(order + "fff", header[108:120])
        elif len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            offset, slope, inter = struct.unpack(order + "qdd", header[168:192])
        else:
            continue
        return int(offset), order == ">", not (slope in (0.0, 1.0) and inter == 0.0)
    return 0, False, True


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
    series = _dicom_series_ids(sitk, folder)
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
    """Write a scalar volume atomically; the format follows the file ending (.nrrd, .nii.gz, .mha...).

    Raises:
        FileExistsError: the file (or the data file of a .nhdr/.mhd header) exists and ``overwrite`` is False.
        FileFormatError: unknown ending, missing or read-only folder.
        InputError: not a 3D array, or ``ijk_to_ras`` unusable.
    """
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
    target = Path(path)
    if not target.name.lower().endswith((".nhdr", ".mhd")):
        with atomic_path(target, overwrite=overwrite) as tmp:
            sitk.WriteImage(image, str(tmp), compress)
        return
    # A detached header names its data file after itself: write both under their final names in a temporary
    # folder, then move the data file and, last, the header into place.
    check_writable_target(target, overwrite)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent) as folder:
        sitk.WriteImage(image, str(Path(folder) / target.name), compress)
        data_files = [f for f in Path(folder).iterdir() if f.name != target.name]
        for data_file in data_files:
            check_writable_target(target.parent / data_file.name, overwrite)
        for data_file in data_files:
            os.replace(data_file, target.parent / data_file.name)
        os.replace(Path(folder) / target.name, target)


def write_png(path: str | os.PathLike[str], image_vu: ArrayLike, *, overwrite: bool = False) -> None:
    """Write a 2D uint8 image (rows v, columns u; RGB as a last axis of 3) to a PNG file atomically."""
    sitk = _sitk()
    array = np.asarray(image_vu)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise InputError(f"PNG needs a 2D uint8 image (or H x W x 3), got {array.dtype} {array.shape}.")
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 3)
    with atomic_path(path, overwrite=overwrite) as tmp:
        sitk.WriteImage(image, str(tmp))
