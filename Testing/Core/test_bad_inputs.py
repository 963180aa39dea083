"""The bad-input catalogue: one row per bad input, with the error it must raise and a fragment of its message.

Every row runs through the Python API (``read_volume`` then ``detect_landmarks`` for a file, ``detect_landmarks``
for an array, ``write_markups`` for an output) and through ``landmark-detector detect`` (exit code, the message on
stderr, no traceback, no output file). An array row is given to the command as a .nrrd file; an array that no
volume file can hold (float16, bool, not 3D, an unusable matrix) runs through the API only, and its file form has
a row of its own. Rows whose error is None must work: the bundled ``hand-mr`` model then finds the five
fingertips of a synthetic hand MR within 8 mm.

Decisions recorded here: every integer and float pixel type works (int64, uint64 and float16 included); NaN and
infinite voxels count as air, so a volume with some of them works and one with only them fails; a flipped axis
(negative spacing in a MetaImage header, or a negative matrix column) and a non-orthogonal (sheared) grid work,
projected in physical space; ITK cannot read a sheared NIfTI, which fails with a message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkDetectorLib import model as model_module
from LandmarkDetectorLib.cli import main
from LandmarkDetectorLib.errors import FileFormatError, InputError, ModelError
from LandmarkDetectorLib.markups import read_markups, write_markups
from LandmarkDetectorLib.model import load_model
from LandmarkDetectorLib.pipeline import detect_landmarks
from LandmarkDetectorLib.synthetic.dataset import synthesize_case
from LandmarkDetectorLib.volume_io import read_volume, write_volume

SEED = 646_464  # not a training or evaluation seed of the bundled models
TOLERANCE_MM = 8.0
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NO_PERMISSIONS = "running as root, where file permissions do not apply"


@dataclass(frozen=True)
class Hand:
    """A synthetic left-hand MR with every second voxel kept (about 1.5 x 1.5 x 3 mm), and its five fingertips."""

    voxels: np.ndarray
    ijk_to_ras: np.ndarray
    truth_ras: np.ndarray
    names: tuple[str, ...]


@pytest.fixture(scope="module")
def hand() -> Hand:
    case = synthesize_case("hand", SEED, 0)
    ijk_to_ras = case.ijk_to_ras.copy()
    ijk_to_ras[:3, :3] *= 2
    return Hand(np.ascontiguousarray(case.voxels_kji[::2, ::2, ::2]), ijk_to_ras, case.landmarks_ras,
                case.landmark_names)


@pytest.fixture(scope="module")
def hand_model():
    return load_model("hand-mr", "cpu")


# ----------------------------------------------------------------------------------------- building bad inputs

Made = Any  # a Path (a file), or (voxels_kji, ijk_to_ras, truth_ras or None)


def same(hand: Hand, voxels: np.ndarray) -> Made:
    return voxels, hand.ijk_to_ras, hand.truth_ras


def as_dtype(dtype: Any) -> Callable[[Path, Hand], Made]:
    """The hand scaled into the range of ``dtype`` (the intensity scale of an MR is arbitrary)."""

    def make(tmp: Path, hand: Hand) -> Made:
        values = hand.voxels.astype(np.float64)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            low, high = max(info.min, -30000), min(info.max, 30000)
            values = low + (values - values.min()) / np.ptp(values) * (high - low)
        return same(hand, values.astype(dtype))

    return make


def with_values(change: Callable[[np.ndarray], None], dtype: Any = np.float32) -> Callable[[Path, Hand], Made]:
    def make(tmp: Path, hand: Hand) -> Made:
        voxels = hand.voxels.astype(dtype)
        change(voxels)
        return same(hand, voxels)

    return make


def scattered(value: float, fraction: float) -> Callable[[np.ndarray], None]:
    def change(voxels: np.ndarray) -> None:
        voxels.ravel()[np.random.default_rng(0).random(voxels.size) < fraction] = value

    return change


def nan_padded(tmp: Path, hand: Hand) -> Made:
    """The hand in a float volume padded with 4 NaN voxels on every side (as some resampling tools write)."""
    shift = np.eye(4)
    shift[:3, 3] = -4
    return np.pad(hand.voxels.astype(np.float32), 4, constant_values=np.nan), hand.ijk_to_ras @ shift, hand.truth_ras


def array(voxels: Callable[[Hand], np.ndarray], matrix: Callable[[Hand], np.ndarray] | None = None
          ) -> Callable[[Path, Hand], Made]:
    return lambda tmp, hand: (voxels(hand), hand.ijk_to_ras if matrix is None else matrix(hand), None)


def with_column(index: int, column: Callable[[np.ndarray], np.ndarray]) -> Callable[[Hand], np.ndarray]:
    def matrix(hand: Hand) -> np.ndarray:
        m = hand.ijk_to_ras.copy()
        m[:3, index] = column(m[:3, :3])
        return m

    return matrix


def flipped_axes(tmp: Path, hand: Hand) -> Made:
    """The same physical hand with its i and k axes reversed: negative matrix columns."""
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    flip[[0, 2], 3] = [hand.voxels.shape[2] - 1, hand.voxels.shape[0] - 1]
    return np.ascontiguousarray(hand.voxels[::-1, :, ::-1]), hand.ijk_to_ras @ flip, hand.truth_ras


def sheared(tmp: Path, hand: Hand) -> Made:
    """A non-orthogonal grid (as from a gantry tilt): the same voxels, the j axis tilted 10 degrees towards i."""
    m = hand.ijk_to_ras.copy()
    m[:3, 1] += np.tan(np.radians(10)) * m[:3, 0] * np.linalg.norm(m[:3, 1]) / np.linalg.norm(m[:3, 0])
    truth = (m @ np.linalg.inv(hand.ijk_to_ras) @ np.c_[hand.truth_ras, np.ones(5)].T).T[:, :3]
    return hand.voxels, m, truth


def slab(axis: int, count: int) -> Callable[[Path, Hand], Made]:
    def make(tmp: Path, hand: Hand) -> Made:
        index = [slice(None)] * 3
        middle = hand.voxels.shape[axis] // 2
        index[axis] = slice(middle, middle + count)
        return np.ascontiguousarray(hand.voxels[tuple(index)]), hand.ijk_to_ras, None

    return make


def small_bead(tmp: Path, hand: Hand) -> Made:
    voxels = np.zeros_like(hand.voxels)
    k, j, i = (n // 2 for n in voxels.shape)
    voxels[k - 2:k + 2, j - 2:j + 2, i - 2:i + 2] = 1000  # 8 mm across
    return voxels, hand.ijk_to_ras, None


def air_ct(tmp: Path, hand: Hand) -> Made:
    noise = np.random.default_rng(1).normal(-1000, 20, hand.voxels.shape)
    return noise.astype(np.int16), hand.ijk_to_ras, None


def file_of(name: str, content: bytes | str) -> Callable[[Path, Hand], Made]:
    def make(tmp: Path, hand: Hand) -> Made:
        path = tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


def image_file(name: str, image: Callable[[], sitk.Image]) -> Callable[[Path, Hand], Made]:
    def make(tmp: Path, hand: Hand) -> Made:
        sitk.WriteImage(image(), str(tmp / name))
        return tmp / name

    return make


def hand_file(name: str, edit: Callable[[bytes], bytes] = lambda data: data, compress: bool = True
              ) -> Callable[[Path, Hand], Made]:
    """The hand written as ``name``, then its bytes edited."""

    def make(tmp: Path, hand: Hand) -> Made:
        path = tmp / name
        write_volume(path, hand.voxels, hand.ijk_to_ras, compress=compress)
        path.write_bytes(edit(path.read_bytes()))
        return path

    return make


def nrrd_directions(change: Callable[[list[list[float]]], None]) -> Callable[[bytes], bytes]:
    """Edit the 'space directions' of an uncompressed NRRD header."""

    def edit(data: bytes) -> bytes:
        header, voxels = data.split(b"\n\n", 1)
        line = re.search(rb"space directions: (.*)", header)
        vectors = [[float(v) for v in vector.split(",")] for vector in re.findall(r"\(([^)]*)\)", line[1].decode())]
        change(vectors)
        text = " ".join("(" + ",".join(repr(v) for v in vector) + ")" for vector in vectors)
        return header.replace(line[0], f"space directions: {text}".encode()) + b"\n\n" + voxels

    return edit


def set_vector(index: int, value: Callable[[list[list[float]]], list[float]]) -> Callable[[list[list[float]]], None]:
    def change(vectors: list[list[float]]) -> None:
        vectors[index] = value(vectors)

    return change


def mha_negative_spacing(data: bytes) -> bytes:
    """ElementSpacing of i negated with the direction of i, so that the voxels stay where they were."""
    header, voxels = data.split(b"ElementDataFile = LOCAL\n", 1)
    text = header.decode()
    matrix = re.search(r"TransformMatrix = (.*)", text)[1].split()
    spacing = re.search(r"ElementSpacing = (.*)", text)[1].split()
    matrix[:3] = [repr(-float(v)) for v in matrix[:3]]  # column-major: the first three are the i axis
    spacing[0] = repr(-float(spacing[0]))
    text = re.sub(r"TransformMatrix = .*", f"TransformMatrix = {' '.join(matrix)}", text)
    text = re.sub(r"ElementSpacing = .*", f"ElementSpacing = {' '.join(spacing)}", text)
    return text.encode() + b"ElementDataFile = LOCAL\n" + voxels


def nifti_sheared_sform(data: bytes) -> bytes:
    """A NIfTI-1 file whose sform is sheared and whose qform is off: no orthonormal geometry."""
    header = bytearray(gzip.decompress(data))
    header[252:254] = np.int16(0).tobytes()  # qform_code
    srow_x = np.frombuffer(bytes(header[280:296]), "<f4").copy()
    srow_x[1] += 0.5
    header[280:296] = srow_x.tobytes()
    return gzip.compress(bytes(header))


def silently_damaged_nrrd(tmp: Path, hand: Hand) -> Made:
    """A gzip NRRD with a flipped bit that teem reads without an error, as wrong voxels (the first such bit from the
    end of the stream)."""
    path = tmp / "damaged.nrrd"
    write_volume(path, hand.voxels, hand.ijk_to_ras)
    data = path.read_bytes()
    for position in range(len(data) - 9, len(data) // 2, -1):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        path.write_bytes(damaged)
        try:
            voxels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        except RuntimeError:
            continue
        if not np.array_equal(voxels, hand.voxels):
            return path
    raise AssertionError("no bit flip gave silently damaged voxels")


def flip_byte(position: float) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        out = bytearray(data)
        out[int(len(out) * position)] ^= 0xFF
        return bytes(out)

    return edit


def truncate(keep: float) -> Callable[[bytes], bytes]:
    return lambda data: data[: int(len(data) * keep)]


def mha_compressed_flip(data: bytes) -> bytes:
    header, stream = data.split(b"ElementDataFile = LOCAL\n", 1)
    assert zlib.decompress(stream)  # a zlib stream: flipping a byte in its middle damages the voxels
    return header + b"ElementDataFile = LOCAL\n" + flip_byte(0.5)(stream)


def unreadable(tmp: Path, hand: Hand) -> Made:
    path = hand_file("secret.nrrd")(tmp, hand)
    path.chmod(0)
    return path


def image_2d() -> sitk.Image:
    return sitk.Image([40, 30], sitk.sitkInt16)


def image_4d() -> sitk.Image:
    return sitk.Image([20, 20, 20, 3], sitk.sitkInt16)


def image_rgb() -> sitk.Image:
    return sitk.Image([20, 20, 20], sitk.sitkVectorUInt8, 3)


def photo() -> sitk.Image:
    return sitk.Image([64, 48], sitk.sitkVectorUInt8, 3)


# ------------------------------------------------------------------------------------------------ the catalogue

@dataclass(frozen=True)
class Row:
    """One bad input.

    Attributes:
        name: what it is (the test id).
        make: builds it in a folder: a file path, or (voxels_kji, ijk_to_ras, truth_ras or None).
        error: the exception it must raise, None if detection must work.
        message: a fragment of the message (CLI and API alike).
        cli: False for an array that no volume file can hold (its file form has a row).
        args: options given to the command (and their API equivalent, see ``api_options``).
        out: the output point list's name, relative to the test folder.
        exit_code: of the command: 0 works, 1 failed, 2 wrong usage.
        skip: reason to skip, or "".
    """

    name: str
    make: Callable[[Path, Hand], Made]
    error: type[Exception] | None
    message: str = ""
    cli: bool = True
    args: tuple[str, ...] = ()
    out: str = "out.mrk.json"
    exit_code: int | None = None
    skip: str = ""

    @property
    def code(self) -> int:
        return self.exit_code if self.exit_code is not None else (0 if self.error is None else 1)


GOOD = hand_file("hand.nrrd")

CATALOGUE = [
    # Files that are missing, unreadable or not images.
    Row("missing file", lambda tmp, hand: tmp / "nope.nii.gz", FileFormatError, "does not exist"),
    Row("folder without DICOM files", lambda tmp, hand: tmp, FileFormatError, "folder without DICOM series"),
    Row("text file named .nrrd", file_of("notes.nrrd", "patient list\n"), FileFormatError, "cannot read"),
    Row("empty 0-byte .nii.gz", file_of("empty.nii.gz", b""), FileFormatError, "is empty (0 bytes)"),
    Row("random bytes named .mha", file_of("noise.mha", np.random.default_rng(2).bytes(5000)), FileFormatError,
        "cannot read"),
    Row("a photo (RGB PNG)", image_file("photo.png", photo), InputError, "3 components per voxel"),
    Row("unreadable file (chmod 000)", unreadable, FileFormatError, "permission denied", skip=NO_PERMISSIONS * ROOT),
    # Images of the wrong kind.
    Row("2D image", image_file("slice.nrrd", image_2d), InputError, "is a 2D image"),
    Row("4D image", image_file("time.nrrd", image_4d), InputError, "is a 4D image"),
    Row("RGB volume", image_file("rgb.nrrd", image_rgb), InputError, "3 components per voxel"),
    Row("zero-size NRRD", hand_file("zero.nrrd", lambda d: re.sub(rb"sizes: \d+", b"sizes: 0", d), compress=False),
        FileFormatError, "size is zero"),
    # Corrupt and truncated files.
    Row("truncated .nii.gz (98%)", hand_file("cut.nii.gz", truncate(0.98)), FileFormatError, "is truncated"),
    Row("truncated .nii.gz (50%)", hand_file("half.nii.gz", truncate(0.5)), FileFormatError, "is truncated"),
    Row("truncated .nrrd", hand_file("cut.nrrd", truncate(0.9)), FileFormatError, "cannot read"),
    Row("corrupt .nii.gz (flipped byte)", hand_file("flip.nii.gz", flip_byte(0.6)), FileFormatError,
        "do not match their checksum"),
    Row("corrupt .nrrd (gzip data damaged)", silently_damaged_nrrd, FileFormatError, "do not match their checksum"),
    Row("corrupt .mha (compressed data damaged)", hand_file("damaged.mha", mha_compressed_flip), FileFormatError,
        "do not match their checksum"),
    # Geometry in file headers.
    Row("zero spacing in a NRRD header",
        hand_file("zero-spacing.nrrd", nrrd_directions(set_vector(0, lambda v: [0.0, 0.0, 0.0])), compress=False),
        FileFormatError, "zero voxel spacing"),
    Row("singular direction in a NRRD header",
        hand_file("singular.nrrd", nrrd_directions(set_vector(1, lambda v: v[0])), compress=False),
        FileFormatError, "singular direction matrix"),
    Row("implausible spacing in a NRRD header",
        hand_file("tiny.nrrd", nrrd_directions(set_vector(2, lambda v: [x * 1e-6 for x in v[2]])), compress=False),
        InputError, "is implausible"),
    Row("sheared NIfTI (no orthonormal sform or qform)", hand_file("sheared.nii.gz", nifti_sheared_sform),
        FileFormatError, "not orthonormal"),
    Row("negative spacing in a MetaImage header", hand_file("negative.mha", mha_negative_spacing, compress=False),
        None),
    # Pixel types: all work.
    *[Row(f"pixel type {np.dtype(t).name}", as_dtype(t), None, cli=t != np.float16)
      for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.uint64, np.float16,
                np.float32, np.float64)],
    Row("bool mask", array(lambda hand: hand.voxels > 300), InputError, "must hold real numbers", cli=False),
    # Arrays of the wrong shape (their file forms are above).
    Row("2D array", array(lambda hand: hand.voxels[0]), InputError, "must be 3D", cli=False),
    Row("4D array", array(lambda hand: np.stack([hand.voxels] * 2)), InputError, "must be 3D", cli=False),
    Row("RGB array", array(lambda hand: np.stack([hand.voxels] * 3, axis=-1)), InputError, "must be 3D", cli=False),
    Row("zero-size array", array(lambda hand: hand.voxels[:0]), InputError, "is empty", cli=False),
    # Values.
    Row("constant volume", array(lambda hand: np.full_like(hand.voxels, 100)), InputError, "is constant"),
    Row("all NaN", array(lambda hand: np.full(hand.voxels.shape, np.nan, np.float32)), InputError,
        "no finite voxel values"),
    Row("NaN padding around the hand", nan_padded, None),
    Row("1% of the voxels NaN", with_values(scattered(np.nan, 0.01)), None),
    Row("0.5% of the voxels +inf, 0.5% -inf",
        with_values(lambda v: (scattered(np.inf, 0.005)(v), scattered(-np.inf, 0.005)(v[::-1]))), None),
    # Geometry of arrays.
    Row("zero spacing", array(lambda hand: hand.voxels, with_column(0, lambda m: 0 * m[:, 0])), InputError,
        "spacing must be positive", cli=False),
    Row("singular direction", array(lambda hand: hand.voxels, with_column(1, lambda m: m[:, 0])), InputError,
        "is singular", cli=False),
    Row("non-finite matrix", array(lambda hand: hand.voxels, with_column(2, lambda m: m[:, 2] * np.nan)),
        InputError, "non-finite", cli=False),
    Row("implausible spacing", array(lambda hand: hand.voxels, with_column(2, lambda m: m[:, 2] * 1e-6)),
        InputError, "is implausible", cli=False),
    Row("flipped axes (negative matrix columns)", flipped_axes, None),
    Row("non-orthogonal (sheared) grid", sheared, None),
    # No body, a body too small, a slab.
    Row("no body (air-only CT)", air_ct, InputError, "no body found"),
    Row("body too small (8 mm bead)", small_bead, InputError, "body is too small"),
    Row("cut to a slab (3 slices)", slab(2, 3), InputError, "slab too thin"),
    Row("one slice", slab(0, 1), InputError, "slab too thin"),
    # Outputs, models and options.
    Row("output folder missing", GOOD, FileFormatError, "does not exist; create it first", out="no/such/p.mrk.json"),
    Row("output folder not writable", GOOD, FileFormatError, "is not writable", out="locked/p.mrk.json",
        skip=NO_PERMISSIONS * ROOT),
    Row("output file exists", GOOD, FileExistsError, "already exists", out="exists.mrk.json", exit_code=2),
    Row("unknown output format", GOOD, FileFormatError, "unsupported markups file extension", out="p.txt",
        exit_code=2),
    Row("model file that is not a model", GOOD, ModelError, "not a TorchScript model bundle",
        args=("--model", "{tmp}/notes.pt")),
    Row("unknown model name", GOOD, ModelError, "unknown model 'hand-ct'", args=("--model", "hand-ct")),
    Row("confidence threshold above 1", GOOD, InputError, "probability", args=("--confidence-threshold", "2"),
        exit_code=2),
    Row("NaN threshold", GOOD, InputError, "finite", args=("--threshold", "nan"), exit_code=2),
]
IDS = [row.name for row in CATALOGUE]
assert len(set(IDS)) == len(IDS)


def prepare(row: Row, tmp: Path, hand: Hand) -> tuple[Made, Path]:
    """The row's input and output path, with the folders and files its output and options need."""
    (tmp / "locked").mkdir()
    (tmp / "locked").chmod(0o555)
    (tmp / "exists.mrk.json").write_text("the user's own points")
    (tmp / "notes.pt").write_text("not a model")
    return row.make(tmp, hand), tmp / row.out


def api_options(row: Row, tmp: Path) -> dict[str, Any]:
    """The keyword arguments of detect_landmarks that stand for the row's command-line options."""
    args = [a.format(tmp=tmp) for a in row.args]
    names = {"--model": ("model", str), "--confidence-threshold": ("confidence_threshold", float),
             "--threshold": ("threshold", float)}
    return {names[flag][0]: names[flag][1](value) for flag, value in zip(args[::2], args[1::2], strict=True)}


def check_found(points_ras: np.ndarray, truth_ras: np.ndarray) -> None:
    errors = np.linalg.norm(np.asarray(points_ras) - truth_ras, axis=1)
    assert errors.max() < TOLERANCE_MM, errors


@pytest.fixture
def folder(tmp_path):
    yield tmp_path
    for path in (tmp_path / "locked", tmp_path / "secret.nrrd"):  # let pytest clean up
        if path.exists():
            path.chmod(0o755)


@pytest.mark.parametrize("row", CATALOGUE, ids=IDS)
def test_python_api(row, folder, hand, hand_model):
    """read_volume -> detect_landmarks -> write_markups: the row's error, raised at whichever step."""
    if row.skip:
        pytest.skip(row.skip)
    made, out = prepare(row, folder, hand)
    options = api_options(row, folder)
    with pytest.raises(row.error, match=re.escape(row.message)) if row.error else contextlib.nullcontext():
        if isinstance(made, Path):
            volume = read_volume(made)
            voxels, matrix, truth = volume.voxels_kji, volume.ijk_to_ras, hand.truth_ras
        else:
            voxels, matrix, truth = made
        model = options.pop("model", hand_model)
        projection = dataclasses.replace(hand_model.metadata.projection, threshold=options.pop("threshold")) \
            if "threshold" in options else None
        landmarks = detect_landmarks(voxels, matrix, model, "cpu", projection=projection, **options)
        write_markups(out, landmarks.to_point_list())
    if row.error is None:
        assert landmarks.names == hand.names and landmarks.found.all()
        check_found(landmarks.points_ras, truth)


@pytest.fixture(scope="module")
def cached_model(hand_model):
    """load_model for the command: the module's hand-mr model instead of loading it again for every row."""
    real = model_module.load_model

    def load(name: Any, device: str = "cpu") -> Any:
        return hand_model if name == "hand-mr" else real(name, device)

    return load


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name, marks=[pytest.mark.slow] if row.error is None else [])
                                 for row in CATALOGUE if row.cli])  # the API runs the working rows in less time
def test_command_line(row, folder, hand, monkeypatch, cached_model, capsys):
    if row.skip:
        pytest.skip(row.skip)
    made, out = prepare(row, folder, hand)
    truth = hand.truth_ras
    if not isinstance(made, Path):
        voxels, matrix, truth = made
        made = folder / "volume.nrrd"
        write_volume(made, voxels, matrix)
    monkeypatch.setattr(model_module, "load_model", cached_model)
    args = [a.format(tmp=folder) for a in row.args]
    if "--model" not in args:
        args += ["--model", "hand-mr"]
    before = out.read_bytes() if out.is_file() else None
    try:
        code = main(["detect", str(made), "--out", str(out), "--device", "cpu", *args])
    except SystemExit as exit_info:  # argparse's usage errors
        code = exit_info.code
    printed = capsys.readouterr()
    assert code == row.code, printed.err
    assert "Traceback" not in printed.err
    if row.error is None:
        points = read_markups(out)
        assert points.labels == list(hand.names) and all(p.status == "defined" for p in points.points)
        check_found(points.positions_ras(), truth)
        return
    assert row.message in printed.err
    assert (out.read_bytes() if out.is_file() else None) == before  # nothing written, nothing replaced
