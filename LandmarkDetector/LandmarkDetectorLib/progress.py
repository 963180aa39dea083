"""Callback types for progress reporting and cancellation, shared by the CLI, Slicer and training."""

from __future__ import annotations

from collections.abc import Callable

from .errors import Cancelled

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
