"""Analytic test volumes with known RAS geometry: spheres, boxes and a two-plate CT table."""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from LandmarkDetectorLib import geometry

AIR_HU = -1000
TISSUE_HU = 40


def rotation(axis: tuple[float, float, float], degrees: float) -> NDArray[np.float64]:
    """3x3 rotation about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a /= np.linalg.norm(a)
    t = np.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def signed_permutations() -> list[NDArray[np.float64]]:
    """All 48 axis-aligned direction matrices (signed permutations), columns = i, j, k axes in RAS."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for col, (row, s) in enumerate(zip(perm, signs, strict=True)):
                m[row, col] = s
            out.append(m)
    return out


ALIGNED_DIRECTIONS = [signed_permutations()[i] for i in (0, 5, 19, 44)]
"""Four axis-aligned orientations of a volume: as is, flipped, and with the axes permuted and flipped."""
OBLIQUE_DIRECTIONS = [rotation((1, 2, 0.5), 30), rotation((0, 1, 1), 60) @ np.diag([1.0, -1, 1])]
"""Two oblique ones, the second a mirror (left-handed index axes)."""
ANISOTROPIC_SPACING_MM = (1.3, 1.9, 1.6)
ODD_SHAPE_KJI = (41, 47, 37)


def make_ijk_to_ras(direction_ras: NDArray[np.float64], spacing: tuple[float, float, float],
                    shape_kji: tuple[int, int, int], centre_ras: tuple[float, float, float]) -> NDArray[np.float64]:
    """ijk_to_ras with the given direction columns and spacing whose volume centre lies at ``centre_ras``."""
    m = np.eye(4)
    m[:3, :3] = direction_ras * np.asarray(spacing)
    centre_ijk = (np.asarray(shape_kji[::-1], dtype=np.float64) - 1) / 2
    m[:3, 3] = np.asarray(centre_ras) - m[:3, :3] @ centre_ijk
    return m


def voxel_centres_ras(shape_kji: tuple[int, int, int], ijk_to_ras: NDArray[np.float64]) -> NDArray[np.float64]:
    """RAS coordinates of every voxel centre, shape (K, J, I, 3)."""
    k, j, i = np.indices(shape_kji, dtype=np.float64)
    ijk = np.stack([i, j, k], axis=-1)
    return ijk @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]


def spheres_volume(shape_kji: tuple[int, int, int], ijk_to_ras: NDArray[np.float64],
                   centres_ras: NDArray[np.float64], radius_mm: float, dtype: type = np.int16) -> NDArray:
    """Air volume with tissue spheres of ``radius_mm`` at ``centres_ras``."""
    ras = voxel_centres_ras(shape_kji, ijk_to_ras)
    inside = np.zeros(shape_kji, dtype=bool)
    for c in np.atleast_2d(centres_ras):
        inside |= np.linalg.norm(ras - c, axis=-1) <= radius_mm
    return np.where(inside, TISSUE_HU, AIR_HU).astype(dtype)


def add_box(volume: NDArray, ijk_to_ras: NDArray[np.float64], low_ras, high_ras, value: float) -> None:
    """Set voxels whose centres lie in the RAS box [low, high] to ``value`` (in place)."""
    ras = voxel_centres_ras(volume.shape, ijk_to_ras)
    inside = np.all((ras >= np.asarray(low_ras)) & (ras <= np.asarray(high_ras)), axis=-1)
    volume[inside] = value


def write_dicom_series(folder, voxels, ijk_to_ras, series_uid="1.2.826.0.1.3680043.2.1125.1", prefix="slice"):
    """Write one DICOM file per slice with positions and orientation from ``ijk_to_ras``."""
    origin, spacing, direction = geometry.itk_from_ijk_to_ras(ijk_to_ras)
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    orientation = "\\".join(f"{v:.8f}" for v in np.concatenate([direction[:, 0], direction[:, 1]]))
    for k in range(voxels.shape[0]):
        sl = sitk.GetImageFromArray(voxels[k:k + 1])
        position = origin + direction[:, 2] * spacing[2] * k
        sl.SetOrigin(position.tolist())
        sl.SetSpacing(spacing.tolist())
        sl.SetDirection(direction.ravel().tolist())
        tags = {
            "0008|0060": "CT", "0020|000d": "1.2.826.0.1.3680043.2.1125.9", "0020|000e": series_uid,
            "0020|0032": "\\".join(f"{p:.6f}" for p in position), "0020|0037": orientation,
            "0020|0013": str(k + 1), "0028|0030": f"{spacing[1]:.6f}\\{spacing[0]:.6f}",
            "0018|0050": f"{spacing[2]:.6f}", "0008|0018": f"{series_uid}.{k + 1}",
        }
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(sl)
