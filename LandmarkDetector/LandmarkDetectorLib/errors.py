"""Error types of the core. Each message says what was wrong, the value received and what to do."""

from __future__ import annotations


class LandmarkDetectorError(Exception):
    """Base class of every error the core raises on purpose."""


class InputError(LandmarkDetectorError, ValueError):
    """The input volume, matrix or parameter cannot be used (wrong shape, empty, singular...)."""


class FileFormatError(LandmarkDetectorError, ValueError):
    """A file could not be read or written in the expected format (corrupt, truncated, not that format)."""


class ModelError(LandmarkDetectorError, ValueError):
    """A model bundle is missing, corrupt, or its metadata is invalid."""


class UsageError(LandmarkDetectorError, ValueError):
    """The request conflicts with what is on disk, e.g. resuming a batch with another model; the CLI exits 2."""


class Cancelled(LandmarkDetectorError):
    """The user cancelled a long operation; nothing was written."""
