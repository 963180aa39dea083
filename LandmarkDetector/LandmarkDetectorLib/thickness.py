"""Joint centres placed at a fraction of the body's thickness along their viewing ray.

A joint centre (a knee) lies inside a limb at a nearly fixed fraction of the limb's thickness along the viewing ray,
whatever the body's size. The network's depth is relative to the whole body's mean and spread of surface depth, which
differ between bodies (DESIGN §1), so for such landmarks the thickness of the body along the ray, read from the volume
itself, places the depth better. A model lists these landmarks and their fractions (``ModelMetadata.depth_fractions``,
calibrated on held-out synthetic volumes by ``training.evaluate.calibrate_depth_fractions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import geometry


def body_runs_along_ray(volume_kji: NDArray, ijk_to_ras: ArrayLike, point_ras: ArrayLike, ray_ras: ArrayLike,
                        threshold: float, min_run_mm: float) -> NDArray[np.float64]:
    """The stretches of body on the line through ``point_ras`` along ``ray_ras``.

    The line is sampled every quarter of the smallest voxel spacing, each sample taking its nearest voxel; a sample
    is body when that voxel is above ``threshold`` (NaN is not body). A stretch shorter than ``min_run_mm`` (a table
    plate, a noise speck) is left out.

    Args:
        volume_kji: voxels indexed [k, j, i].
        ijk_to_ras: 4x4 voxel-centre-to-RAS matrix, mm.
        point_ras: (3,) a point on the line, RAS mm.
        ray_ras: (3,) the line's direction (any length).
        threshold: body/air intensity threshold.
        min_run_mm: shortest stretch kept, mm.
    Returns:
        (K, 2) entry and exit of each stretch, mm along the unit ray from ``point_ras`` (negative: before it), in
        order along the ray; (0, 2) when the line crosses no body.
    """
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    ray = np.asarray(ray_ras, dtype=np.float64)
    ray = ray / np.linalg.norm(ray)
    point = np.asarray(point_ras, dtype=np.float64)
    shape_ijk = np.array(np.shape(volume_kji)[::-1], dtype=np.float64)
    ras_to_ijk = np.linalg.inv(m)
    start_ijk = ras_to_ijk[:3, :3] @ point + ras_to_ijk[:3, 3]
    step_ijk = ras_to_ijk[:3, :3] @ ray  # voxels per mm along the ray
    # Where the line is inside the volume's extent (voxel centres +- half a voxel): t_low < t < t_high.
    with np.errstate(divide="ignore", invalid="ignore"):
        t_a = (-0.5 - start_ijk) / step_ijk
        t_b = (shape_ijk - 0.5 - start_ijk) / step_ijk
    parallel = np.abs(step_ijk) < 1e-12
    outside = parallel & ((start_ijk < -0.5) | (start_ijk > shape_ijk - 0.5))
    if outside.any():
        return np.zeros((0, 2))
    t_low = float(np.max(np.where(parallel, -np.inf, np.minimum(t_a, t_b))))
    t_high = float(np.min(np.where(parallel, np.inf, np.maximum(t_a, t_b))))
    step_mm = float(geometry.spacing_mm(m).min()) / 4
    t = np.arange(t_low + step_mm / 2, t_high, step_mm)  # empty when the line misses the volume
    ijk = np.rint(start_ijk + t[:, None] * step_ijk).astype(np.int64)
    ijk = np.clip(ijk, 0, shape_ijk.astype(np.int64) - 1)  # a sample rounded onto the extent's very edge
    body = np.asarray(volume_kji)[ijk[:, 2], ijk[:, 1], ijk[:, 0]] > threshold
    edges = np.diff(np.concatenate([[0], body.astype(np.int8), [0]]))
    entry = t[np.flatnonzero(edges == 1)] - step_mm / 2
    exit_ = t[np.flatnonzero(edges == -1) - 1] + step_mm / 2
    keep = exit_ - entry >= min_run_mm
    return np.column_stack([entry[keep], exit_[keep]])


def nearest_run(runs: NDArray[np.float64]) -> tuple[float, float] | None:
    """The stretch of ``runs`` (``body_runs_along_ray``) that holds t = 0, or else the nearest one; None if none."""
    if not len(runs):
        return None
    entry, exit_ = runs[np.argmin(np.maximum(runs[:, 0], 0.0) - np.minimum(runs[:, 1], 0.0))]
    return float(entry), float(exit_)


def at_depth_fractions(points_ras: NDArray[np.float64], names: Sequence[str], fractions: Mapping[str, float],
                       volume_kji: NDArray, ijk_to_ras: ArrayLike, ray_ras: ArrayLike, threshold: float,
                       min_run_mm: float) -> NDArray[np.float64]:
    """Points of the landmarks in ``fractions`` moved along the ray to that fraction of the body's stretch they lie
    in or nearest to (0: where the ray enters it, 1: where it leaves); the others, and those whose ray crosses no
    body, unchanged.

    Args:
        points_ras: (N, 3) RAS mm, one per name.
        names: landmark names.
        fractions: landmark name -> fraction of the thickness along the ray.
        volume_kji, ijk_to_ras, ray_ras, threshold, min_run_mm: as ``body_runs_along_ray``.
    Returns:
        (N, 3) RAS mm.
    """
    ray = np.asarray(ray_ras, dtype=np.float64)
    ray = ray / np.linalg.norm(ray)
    out = np.array(points_ras, dtype=np.float64)
    for n, name in enumerate(names):
        if name not in fractions:
            continue
        run = nearest_run(body_runs_along_ray(volume_kji, ijk_to_ras, out[n], ray, threshold, min_run_mm))
        if run is not None:
            out[n] += (run[0] + fractions[name] * (run[1] - run[0])) * ray
    return out


def fraction_in_run(runs: NDArray[np.float64]) -> float:
    """Where t = 0 lies in the stretch of ``runs`` that holds it or is nearest to it (``nearest_run``), as a fraction
    of that stretch (0 at its entry, 1 at its exit; beyond [0, 1] outside it); NaN without stretches."""
    run = nearest_run(runs)
    return float("nan") if run is None else -run[0] / (run[1] - run[0])
