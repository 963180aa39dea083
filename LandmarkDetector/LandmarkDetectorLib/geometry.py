"""Voxel and patient coordinate frames: IJK-to-RAS matrices, LPS/RAS conversion, axis alignment.

Conventions (DESIGN §3): Slicer's world frame is RAS in millimetres; files and ITK use LPS. Volumes are numpy
arrays indexed ``[k, j, i]`` (``slicer.util.arrayFromVolume`` order) with a 4x4 ``ijk_to_ras`` matrix mapping the
column vector ``(i, j, k, 1)`` of a voxel centre to RAS millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""Homogeneous matrix converting LPS to RAS (and back: it is its own inverse)."""

MAX_ANISOTROPY = 1000.0
"""Largest ratio of voxel spacings accepted: beyond it a header is wrong (e.g. one spacing in metres)."""


def lps_to_ras(points_lps: ArrayLike) -> NDArray[np.float64]:
    """Convert points (..., 3) from LPS to RAS millimetres (negate x and y)."""
    points = np.array(points_lps, dtype=np.float64)
    points[..., :2] *= -1.0
    return points


def apply_affine(matrix: ArrayLike, points: ArrayLike) -> NDArray[np.float64]:
    """Apply a 4x4 homogeneous matrix to points of shape (..., 3)."""
    m = np.asarray(matrix, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:3, :3].T + m[:3, 3]


def validate_ijk_to_ras(ijk_to_ras: ArrayLike) -> NDArray[np.float64]:
    """Return ``ijk_to_ras`` as a float64 4x4 array, or raise InputError if it cannot map voxels to space.

    Raises:
        InputError: not 4x4, non-finite entries, last row not (0, 0, 0, 1), zero or implausible spacing, singular
            axes.
    """
    m = np.array(ijk_to_ras, dtype=np.float64)
    if m.shape != (4, 4):
        raise InputError(f"ijk_to_ras must be a 4x4 matrix, got shape {m.shape}.")
    if not np.all(np.isfinite(m)):
        raise InputError(f"ijk_to_ras has non-finite entries:\n{m}\nCheck the image's spacing, origin and direction.")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0]):
        raise InputError(f"ijk_to_ras last row must be (0, 0, 0, 1), got {m[3].tolist()}.")
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"voxel spacing must be positive, got {spacing.tolist()} mm; fix the image header.")
    if spacing.max() > MAX_ANISOTROPY * spacing.min():
        raise InputError(f"voxel spacing {spacing.tolist()} mm is implausible: one axis is more than "
                         f"{MAX_ANISOTROPY:g} times finer than another; fix the spacing in the image header.")
    direction = m[:3, :3] / spacing
    if abs(np.linalg.det(direction)) < 1e-3:
        raise InputError(
            f"the voxel axes are (nearly) parallel, direction matrix\n{direction.round(4)}\nis singular; "
            "fix the image's direction cosines.")
    return m


def spacing_mm(ijk_to_ras: ArrayLike) -> NDArray[np.float64]:
    """Voxel spacing (i, j, k) in millimetres: the lengths of the matrix columns."""
    return np.linalg.norm(np.asarray(ijk_to_ras, dtype=np.float64)[:3, :3], axis=0)


def ijk_to_ras_from_itk(origin_lps: ArrayLike, spacing: ArrayLike, direction_lps: ArrayLike) -> NDArray[np.float64]:
    """Build ``ijk_to_ras`` from ITK/SimpleITK image geometry (LPS origin, spacing, row-major 3x3 direction)."""
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = np.asarray(direction_lps, dtype=np.float64).reshape(3, 3) * np.asarray(spacing, float)
    ijk_to_lps[:3, 3] = np.asarray(origin_lps, dtype=np.float64)
    return LPS_TO_RAS @ ijk_to_lps


def itk_from_ijk_to_ras(ijk_to_ras: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Split ``ijk_to_ras`` into ITK geometry: LPS origin (3,), spacing (3,), direction (3, 3) with unit columns."""
    ijk_to_lps = LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=np.float64)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    return ijk_to_lps[:3, 3].copy(), spacing, ijk_to_lps[:3, :3] / spacing


@dataclass(frozen=True)
class AxisMap:
    """How one RAS-aligned viewing axis is found in the voxel array.

    Attributes:
        array_axis: axis of the ``[k, j, i]`` array that runs along the viewing axis.
        reversed: True when increasing array index runs against the viewing axis direction.
    """

    array_axis: int
    reversed: bool


def match_axes(ijk_to_ras: ArrayLike, shape_kji: tuple[int, ...], directions_ras: ArrayLike,
               tolerance_vox: float = 0.05) -> list[AxisMap] | None:
    """Map each RAS direction (unit vectors, rows) to an array axis, if the volume is axis-aligned with them.

    A volume counts as axis-aligned when snapping its direction cosines to the nearest signed permutation moves
    no voxel centre by more than ``tolerance_vox`` voxels (DICOM headers often carry ~1e-6 rounding noise).

    Returns:
        One AxisMap per direction, or None when the volume is oblique to these directions.
    """
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    direction = m[:3, :3] / spacing  # columns: unit vectors of i, j, k in RAS
    extent_mm = (np.asarray(shape_kji[::-1], dtype=np.float64) - 1).clip(min=0) * spacing  # i, j, k
    maps = []
    for d in np.asarray(directions_ras, dtype=np.float64):
        cosines = d @ direction  # cosine between this direction and the i, j, k axes
        ijk_axis = int(np.argmax(np.abs(cosines)))
        off_axis_mm = extent_mm[ijk_axis] * np.sqrt(max(0.0, 1.0 - cosines[ijk_axis] ** 2))
        if off_axis_mm > tolerance_vox * spacing.min():
            return None
        maps.append(AxisMap(array_axis=2 - ijk_axis, reversed=bool(cosines[ijk_axis] < 0)))
    if len({a.array_axis for a in maps}) != len(maps):
        return None
    return maps
