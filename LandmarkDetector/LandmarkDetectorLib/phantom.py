"""A crude hand phantom with known fingertips, for the Slicer module's self-test (which runs where the pip-only
``synthetic`` package is not installed)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

HAND_TIPS_RAS = {"ThumbTip": (-80.0, -4.0, 78.0), "IndexTip": (-36.0, 0.0, 150.0), "MiddleTip": (-12.0, 0.0, 160.0),
                 "RingTip": (11.0, 0.0, 152.0), "LittleTip": (32.0, 0.0, 132.0)}
"""Fingertip positions of the phantom, in the order of the bundled hand-mr model's landmarks (RAS, mm)."""

_FINGER_BASES_RS = {"ThumbTip": (-40.0, 25.0), "IndexTip": (-33.0, 85.0), "MiddleTip": (-11.0, 85.0),
                    "RingTip": (10.0, 85.0), "LittleTip": (29.0, 80.0)}
_FINGER_RADIUS_MM = 8.0


def _rotation(axis: tuple[float, float, float], degrees: float) -> NDArray[np.float64]:
    """3x3 right-handed rotation about ``axis`` (Rodrigues' formula; vtkTransform.RotateWXYZ's convention)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


def hand_phantom() -> tuple[NDArray[np.int16], NDArray[np.float64], dict[str, NDArray[np.float64]]]:
    """A left hand, palm down and fingers pointing superior, as an MR-like volume in an oblique, flipped grid.

    The palm and forearm end are a box (R -47..37, A -12..12, S -40..85 mm); each finger is a rod of radius 8 mm
    from its base on the palm to a round end at its tip. Tissue is 700, background 20.

    Returns:
        voxels [k, j, i] (140 x 70 x 150, int16), 4x4 IJK-to-RAS matrix (1.5, 1.5, 2 mm voxels, i flipped, rotated
        12 degrees), and each fingertip's RAS position (mm), keyed and ordered as HAND_TIPS_RAS.
    """
    ijk_to_ras = np.diag([-1.5, 1.5, 2.0, 1.0])
    ijk_to_ras[:3, :3] = _rotation((0.3, 1.0, 0.2), 12.0) @ ijk_to_ras[:3, :3]
    shape_kji = (140, 70, 150)
    ijk_to_ras[:3, 3] = [-10.0, 0.0, 60.0] - ijk_to_ras[:3, :3] @ ((np.array(shape_kji[::-1]) - 1) / 2)
    k, j, i = np.indices(shape_kji, dtype=np.float64)
    r, a, s = (ijk_to_ras[row, 0] * i + ijk_to_ras[row, 1] * j + ijk_to_ras[row, 2] * k + ijk_to_ras[row, 3]
               for row in range(3))
    inside = (np.abs(r + 5.0) < 42.0) & (np.abs(a) < 12.0) & (s > -40.0) & (s < 85.0)
    tips = {name: np.array(tip) for name, tip in HAND_TIPS_RAS.items()}
    for name, (base_r, base_s) in _FINGER_BASES_RS.items():
        base = np.array([base_r, 0.0, base_s])
        axis = tips[name] - base
        length = float(np.linalg.norm(axis))
        axis /= length
        along = np.clip((r - base[0]) * axis[0] + a * axis[1] + (s - base[2]) * axis[2], 0.0,
                        length - _FINGER_RADIUS_MM)
        inside |= (r - base[0] - along * axis[0]) ** 2 + (a - along * axis[1]) ** 2 + (
            s - base[2] - along * axis[2]) ** 2 < _FINGER_RADIUS_MM ** 2
    return np.where(inside, 700, 20).astype(np.int16), ijk_to_ras, tips
