"""Progress reporting and cancellation shared by the CLI, Slicer and training: callback types, and progress bars
that fall back to log lines where tqdm is missing (tqdm is optional: Slicer's Python lacks it)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from .errors import Cancelled

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
"""Called with a fraction in [0, 1] and a short message."""

CancelCheck = Callable[[], bool]
"""Returns True when the user asked to cancel."""


def report(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    """Call ``progress`` if given."""
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def check_cancel(should_cancel: CancelCheck | None) -> None:
    """Raise Cancelled if ``should_cancel()`` says so."""
    if should_cancel is not None and should_cancel():
        raise Cancelled("Cancelled by the user; nothing was written.")


def progress_bar(total: int, description: str, *, unit: str = "case", enabled: bool = True) -> Any:
    """A tqdm bar (log messages printed above it), or log lines about every 5% where tqdm is missing (Slicer's
    Python). Use it as a context manager; it has tqdm's ``n``, ``update``, ``set_postfix``, ``set_postfix_str`` and
    ``close``."""
    try:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:
        return LoggedProgress(total, description, unit=unit, enabled=enabled)
    return _RedirectedBar(tqdm(total=total, unit=unit, desc=description, dynamic_ncols=True, disable=not enabled),
                          logging_redirect_tqdm())


class _RedirectedBar:
    """A tqdm bar that, inside a ``with`` block, routes log messages above itself."""

    def __init__(self, bar: Any, redirect: contextlib.AbstractContextManager) -> None:
        self._bar, self._redirect = bar, redirect

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bar, name)

    def __enter__(self) -> _RedirectedBar:
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
        self._redirect.__exit__(*exc)


class LoggedProgress:
    """The part of tqdm's interface that the commands and training use, as INFO log lines about every 5%."""

    def __init__(self, total: int, description: str, *, unit: str = "case", enabled: bool = True) -> None:
        self.total, self.description, self.unit, self.enabled = total, description, unit, enabled
        self.n, self.postfix = 0, ""

    def __enter__(self) -> LoggedProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, count: int = 1) -> None:
        before, self.n = self.n, self.n + count
        step = max(1, self.total // 20)
        if self.enabled and count and (self.n >= self.total or self.n // step > before // step):
            logger.info("%s: %d/%d %ss %s", self.description, self.n, self.total, self.unit, self.postfix)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **values}.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        pass
