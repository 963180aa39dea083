"""Atomic writes: every writer replaces its target in one rename (a reader sees the old file or the whole new one; a
failure leaves the old file and no temporary), and files get the permissions any other tool would give them: 0o666
less the umask for a new file, the old mode for a replaced one (as ``open(path, "w")`` does), never tempfile's
owner-only 0o600."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from LandmarkDetectorLib.errors import FileFormatError
from LandmarkDetectorLib.fileio import atomic_open, atomic_path
from LandmarkDetectorLib.framing import CanvasSpec
from LandmarkDetectorLib.markups import PointList, write_markups
from LandmarkDetectorLib.volume_io import write_png, write_volume

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set the process umask for the test and restore it afterwards."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=lambda m: f"umask-{m:03o}")
def test_new_files_get_0o666_less_the_umask(tmp_path, umask, mask):
    umask(mask)
    with atomic_open(tmp_path / "a.json") as f:
        f.write("{}")
    write_markups(tmp_path / "p.mrk.json", PointList.from_arrays(["A"], np.zeros((1, 3))))
    write_volume(tmp_path / "v.nii.gz", np.zeros((3, 4, 5), np.int16), np.eye(4))
    write_png(tmp_path / "i.png", np.zeros((4, 5), np.uint8))
    for name in ("a.json", "p.mrk.json", "v.nii.gz", "i.png"):
        assert mode(tmp_path / name) == 0o666 & ~mask, name


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o077)  # the mode comes from the old file, not from the umask
    for old_mode in (0o644, 0o664, 0o600):
        path = tmp_path / f"{old_mode:o}.csv"
        path.write_text("old")
        path.chmod(old_mode)
        with atomic_open(path, overwrite=True) as f:
            f.write("new")
        assert path.read_text() == "new" and mode(path) == old_mode


def test_a_writer_that_recreates_its_file_gets_the_mode_too(tmp_path, umask):
    umask(0o022)
    with atomic_path(tmp_path / "x.bin") as tmp:
        tmp.unlink()  # as writers that delete and create their output do (os.open with mode 0o600)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))
    assert mode(tmp_path / "x.bin") == 0o644


def test_no_temporary_file_is_left_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "a.txt") as f:
        f.write("half")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def _write_model(path):
    from analytic_model import CentroidModel

    from LandmarkDetectorLib.model import ModelMetadata, save_model
    from LandmarkDetectorLib.projection import ProjectionConfig

    metadata = ModelMetadata(name="m", landmarks=("Centroid",), canvas=CanvasSpec(16, 16, 2.0),
                             projection=ProjectionConfig())
    save_model(CentroidModel(), metadata, path, overwrite=True)


def _write_text(path):
    with atomic_open(path, overwrite=True) as f:
        f.write("new " * 10_000)


POINTS = PointList.from_arrays(["A", "B"], np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
WRITERS = {
    "points.mrk.json": lambda p: write_markups(p, POINTS, overwrite=True),
    "points.fcsv": lambda p: write_markups(p, POINTS, overwrite=True),
    "points.csv": lambda p: write_markups(p, POINTS, overwrite=True),
    "volume.nii.gz": lambda p: write_volume(p, np.ones((3, 4, 5), np.int16), np.eye(4), overwrite=True),
    "volume.nrrd": lambda p: write_volume(p, np.ones((3, 4, 5), np.int16), np.eye(4), overwrite=True),
    "image.png": lambda p: write_png(p, np.ones((4, 5), np.uint8), overwrite=True),
    "model.pt": _write_model,
    "text.json": _write_text,
}


@pytest.mark.parametrize("name", WRITERS)
def test_readers_see_the_old_file_or_the_whole_new_one(tmp_path, monkeypatch, name):
    """Every writer puts its whole output in a temporary file beside the target and renames it over the target in
    one step, so that the target is untouched until then (a killed writer leaves the old file)."""
    target = tmp_path / name
    target.write_bytes(b"OLD")
    replace, renamed = os.replace, []

    def spy(source, destination):
        assert Path(destination) == target and Path(source).parent == tmp_path and Path(source) != target
        assert target.read_bytes() == b"OLD", "the target was written before the rename"
        renamed.append(Path(source).read_bytes())
        replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    WRITERS[name](target)
    assert len(renamed) == 1 and target.read_bytes() == renamed[0] != b"OLD"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", WRITERS)
def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, name):
    target = tmp_path / name
    target.write_bytes(b"OLD")

    def full_disk(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        WRITERS[name](target)
    assert target.read_bytes() == b"OLD"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_missing_folder_or_an_existing_file_is_refused_before_anything_is_written(tmp_path):
    """Guards check_writable_target's messages: the missing folder named (not the working directory's), and the
    file that exists."""
    with pytest.raises(FileFormatError, match=rf"^cannot write {tmp_path}/no/a.txt: folder {tmp_path}/no does not "
                                              r"exist; create it first\.$"):
        with atomic_open(tmp_path / "no" / "a.txt") as f:
            f.write("x")
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(FileExistsError, match=rf"^{tmp_path}/a.txt already exists; pass overwrite=True to replace "
                                              r"it\.$"):
        with atomic_open(tmp_path / "a.txt") as f:
            f.write("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"


@pytest.mark.parametrize("denied", [os.W_OK, os.X_OK], ids=["no write", "no search"])
def test_a_folder_without_write_or_search_permission_is_refused(tmp_path, monkeypatch, denied):
    """Guards the permission check (both write and search are needed to create a file); the operating system's
    answer is faked, since the tests may run as root, whom a folder's mode does not stop."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & denied and real_access(path, mode))
    with pytest.raises(FileFormatError, match=rf"^cannot write {tmp_path}/a.txt: folder {tmp_path} is not writable; "
                                              r"choose another output folder\.$"):
        with atomic_open(tmp_path / "a.txt") as f:
            f.write("x")
    assert list(tmp_path.iterdir()) == []
