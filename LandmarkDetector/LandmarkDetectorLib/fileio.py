"""Safe file writing: atomic replacement and refusal to overwrite user files unless asked."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import FileFormatError


def check_writable_target(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check that ``path`` may be written: its folder exists and is writable, and it exists only if ``overwrite``.

    Raises:
        FileExistsError: the file exists and ``overwrite`` is False.
        FileFormatError: the folder is missing or not writable.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileFormatError(f"cannot write {target}: folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileFormatError(f"cannot write {target}: folder {folder} is not writable; choose another output folder.")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) to replace it.")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path`` atomically.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    target = check_writable_target(path, overwrite)
    # Keep the real suffix (e.g. ".nii.gz") so writers that choose the format by extension still work.
    name = target.name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{''.join(target.suffixes)}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not overwrite and target.exists():
            raise FileExistsError(f"{target} appeared while writing; not replaced. Pass overwrite=True to replace it.")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", overwrite: bool = False,
                encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` atomically when the block ends without error."""
    binary = "b" in mode
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, mode, encoding=None if binary else encoding, newline=None if binary else newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
