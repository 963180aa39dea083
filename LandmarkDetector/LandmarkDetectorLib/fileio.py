"""Safe file writing: atomic replacement and refusal to overwrite user files unless asked."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
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
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it.")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path`` atomically.

    The file gets the permissions ``open(path, "w")`` would give it: a new file 0o666 less the umask (and the
    folder's default ACL), a replaced file keeps its mode. On any error the temporary file is removed and ``path``
    is left as it was.
    """
    target = check_writable_target(path, overwrite)
    tmp = _create_temporary(target)
    try:
        mode = stat.S_IMODE((target if target.exists() else tmp).stat().st_mode)
        yield tmp
        if not overwrite and target.exists():
            raise FileExistsError(f"{target} appeared while writing; not replaced. Pass overwrite=True to replace it.")
        os.chmod(tmp, mode)  # also when the writer replaced the temporary file by one of its own
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _create_temporary(target: Path) -> Path:
    """Create an empty ``.<name>.<random>.tmp<suffixes>`` beside ``target``, with mode 0o666 less the umask.

    Unlike ``tempfile.mkstemp`` (always 0o600), the kernel applies the umask here as for any new file. The real
    suffixes (e.g. ".nii.gz") stay last so that writers that choose the format by extension still work.
    """
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp{''.join(target.suffixes)}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


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
