"""Volume -> 2D projection: binary silhouette and body-surface depth image, in physical space (DESIGN §1, §3).

A view looks along a patient axis with image up = superior:

- ``"ap"``: rays run anterior -> posterior; image columns ``u`` run from the patient's right to left
  (radiological coronal view), rows ``v`` from superior to inferior.
- ``"lr"``: rays run from the patient's left to right; columns ``u`` run anterior -> posterior, rows ``v``
  superior -> inferior.

``pixel_to_ras`` maps the column vector ``(u, v, d, 1)`` to RAS millimetres, where ``(u, v)`` is the pixel
(centres at integers) and ``d`` the depth in mm along the ray from the grid's front plane. Axis-aligned volumes
are projected without interpolation (index transposes and flips only); oblique ones are resampled trilinearly onto
a grid aligned with the patient axes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import geometry
from .errors import InputError
from .progress import CancelCheck, ProgressCallback, check_cancel, report

View = Literal["ap", "lr"]

# Rows: the RAS unit vectors of the u (column), v (row) and d (ray) axes of each view.
VIEW_AXES_RAS: dict[str, NDArray[np.float64]] = {
    "ap": np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]]),
    "lr": np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]),
}

BACKGROUND_DEPTH = 3.0
"""Normalized depth given to background pixels (Riegler et al.)."""

CT_AIR_THRESHOLD_HU = -500.0
CT_AIR_MAX_HU = -900.0
"""A volume whose 0.5th percentile is at most this is a CT (air near -1000 HU)."""


@dataclass(frozen=True)
class ProjectionConfig:
    """How a volume becomes a silhouette and a depth image.

    Attributes:
        threshold: intensity above which a voxel is body; None picks it automatically (see ``auto_threshold``).
        table_removal_mm: a ray is body only if its above-threshold voxels add up to at least this many mm
            (removes the thin CT table plates, Riegler et al. §2.1); 0 disables it.
        surface_min_mm: the body surface is the first voxel followed, this many mm deeper, by another body voxel:
            thinner layers in front of it (a table plate in front of a prone patient, noise specks) are skipped;
            0 takes the first voxel above the threshold.
        pixel_spacing_mm: output pixel size; None keeps the voxel spacing of an axis-aligned volume (which may
            differ between u and v) and uses the smallest voxel spacing for an oblique one.
        view: "ap" or "lr" (module docstring).
    """

    threshold: float | None = None
    table_removal_mm: float = 15.0
    surface_min_mm: float = 5.0
    pixel_spacing_mm: float | None = None
    view: View = "ap"

    def __post_init__(self) -> None:
        if self.view not in VIEW_AXES_RAS:
            raise InputError(f"view must be one of {sorted(VIEW_AXES_RAS)}, got {self.view!r}.")
        for name in ("table_removal_mm", "surface_min_mm"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a number >= 0, got {value}.")
        if self.pixel_spacing_mm is not None and not (self.pixel_spacing_mm > 0 and np.isfinite(self.pixel_spacing_mm)):
            raise InputError(f"pixel_spacing_mm must be a positive number of mm, got {self.pixel_spacing_mm}.")
        if self.threshold is not None and not np.isfinite(self.threshold):
            raise InputError(f"threshold must be a finite number, got {self.threshold}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProjectionConfig:
        known = set(cls.__dataclass_fields__)
        if set(values) - known:
            raise InputError(f"unknown projection settings {sorted(set(values) - known)}; known: {sorted(known)}.")
        return cls(**values)


@dataclass(frozen=True)
class ProjectedImage:
    """A projection of a volume, indexed ``[v, u]``.

    Attributes:
        silhouette: (H, W) bool, True where the ray crosses the body.
        depth_mm: (H, W) float32, depth of the body surface along the ray, mm from the front plane: half a
            sample step in front of the first body voxel (the air/body boundary, so that the surface is not
            biased half a voxel deep); NaN outside the silhouette.
        pixel_to_ras: 4x4 matrix mapping (u, v, d, 1) to RAS mm.
        threshold: the intensity threshold that was used.
        view: "ap" or "lr".
    """

    silhouette: NDArray[np.bool_]
    depth_mm: NDArray[np.float32]
    pixel_to_ras: NDArray[np.float64]
    threshold: float
    view: str
    depth_mean_mm: float = field(init=False)
    depth_std_mm: float = field(init=False)

    def __post_init__(self) -> None:
        body = self.depth_mm[self.silhouette]
        mean = float(body.mean()) if body.size else 0.0
        std = float(body.std()) if body.size else 0.0
        object.__setattr__(self, "depth_mean_mm", mean)
        # A flat surface has no spread; unit scale keeps the normalization defined.
        object.__setattr__(self, "depth_std_mm", std if std > 1e-6 else 1.0)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) = (rows v, columns u)."""
        return self.silhouette.shape  # type: ignore[return-value]

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """(u, v) pixel size in mm."""
        return (float(np.linalg.norm(self.pixel_to_ras[:3, 0])), float(np.linalg.norm(self.pixel_to_ras[:3, 1])))

    def normalized_depth(self) -> NDArray[np.float32]:
        """Depth over body pixels scaled to zero mean and unit standard deviation; background set to 3."""
        out = np.full(self.shape, BACKGROUND_DEPTH, dtype=np.float32)
        out[self.silhouette] = (self.depth_mm[self.silhouette] - self.depth_mean_mm) / self.depth_std_mm
        return out

    def normalize_depth(self, depth_mm: ArrayLike) -> NDArray[np.float64]:
        """Landmark depth in mm -> normalized depth, with the image's body statistics."""
        return (np.asarray(depth_mm, dtype=np.float64) - self.depth_mean_mm) / self.depth_std_mm

    def denormalize_depth(self, depth_normalized: ArrayLike) -> NDArray[np.float64]:
        """Normalized depth -> depth in mm along the ray."""
        return np.asarray(depth_normalized, dtype=np.float64) * self.depth_std_mm + self.depth_mean_mm

    def uvd_to_ras(self, uvd: ArrayLike) -> NDArray[np.float64]:
        """(N, 3) pixel column, row and depth in mm -> (N, 3) RAS mm."""
        return geometry.apply_affine(self.pixel_to_ras, uvd)

    def ras_to_uvd(self, points_ras: ArrayLike) -> NDArray[np.float64]:
        """(N, 3) RAS mm -> (N, 3) pixel column, row and depth in mm."""
        return geometry.apply_affine(np.linalg.inv(self.pixel_to_ras), points_ras)


def view_pixel_to_ras(view: str, origin_ras: ArrayLike, spacing_uv_mm: tuple[float, float]) -> NDArray[np.float64]:
    """The pixel_to_ras matrix of ``view`` whose pixel (0, 0) at depth 0 lies at ``origin_ras``."""
    axes = VIEW_AXES_RAS[view]
    m = np.eye(4)
    m[:3, 0] = axes[0] * spacing_uv_mm[0]
    m[:3, 1] = axes[1] * spacing_uv_mm[1]
    m[:3, 2] = axes[2]
    m[:3, 3] = np.asarray(origin_ras, dtype=np.float64)
    return m


def auto_threshold(volume_kji: NDArray[Any], max_samples: int = 250_000) -> float:
    """Body/air threshold: -500 HU for CT (air present near -1000), Otsu's threshold otherwise (MR).

    Works on a strided subsample, so its cost is a small fraction of one pass over the volume. Non-finite voxels
    are left out.

    Raises:
        InputError: no finite voxel, or every sampled voxel has the same value.
    """
    step = max(1, int(round((volume_kji.size / max_samples) ** (1 / 3))))
    sample = np.asarray(volume_kji[::step, ::step, ::step], dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise InputError("the volume has no finite voxel values (all NaN or infinite); check the file.")
    # CT, even when (almost) all of it is air (then no body is found, rather than noise): its 0.5th percentile is at
    # most -900. Counting decides that without sorting when more samples than the percentile's upper rank are below.
    if np.count_nonzero(sample < CT_AIR_MAX_HU) > int(np.floor(0.005 * (sample.size - 1))) + 1:
        return CT_AIR_THRESHOLD_HU
    low, high = np.percentile(sample, [0.5, 99.5])
    if low <= CT_AIR_MAX_HU:
        return CT_AIR_THRESHOLD_HU
    if sample.min() == sample.max():
        raise InputError(f"the volume is constant (every voxel sampled is {low:g}): a blank image with no body to "
                         "separate from air; check that the right file or series was exported.")
    if high <= low:  # a body in fewer than 0.5% of the voxels
        low, high = sample.min(), sample.max()
    return otsu_threshold(sample[(sample >= low) & (sample <= high)])


def otsu_threshold(values: NDArray[np.float64], bins: int = 256) -> float:
    """Otsu's threshold (maximum between-class variance) of a 1D sample, centred in a flat maximum."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = (w0 * w1 * (m0 - m1) ** 2)[:-1]
    # Well separated classes give a flat maximum over the whole gap: take the middle of that plateau.
    plateau = np.flatnonzero(between >= 0.98 * between.max())
    return float(edges[1:][plateau].mean())


def project_volume(volume_kji: NDArray[Any], ijk_to_ras: ArrayLike, config: ProjectionConfig | None = None, *,
                   progress: ProgressCallback | None = None,
                   should_cancel: CancelCheck | None = None) -> ProjectedImage:
    """Project a CT/MR volume to a silhouette and a depth image seen along a patient axis.

    Args:
        volume_kji: voxels indexed [k, j, i] (slicer.util.arrayFromVolume order), any real dtype. A voxel is body
            when it is finite and above the threshold: NaN and infinite voxels count as air.
        ijk_to_ras: 4x4 voxel-to-RAS matrix, millimetres; any invertible affine (oblique, flipped, sheared).
        config: threshold, table removal, pixel spacing and view; defaults to ProjectionConfig().
        progress: called with (fraction, message) as slabs are processed.
        should_cancel: checked between slabs.
    Returns:
        ProjectedImage covering the volume's RAS bounding box (voxel centres).
    Raises:
        InputError: volume not 3D, empty, not real-valued or blank, or ijk_to_ras unusable.
        Cancelled: should_cancel() returned True.
    """
    config = config or ProjectionConfig()
    volume_kji = _validate_volume(volume_kji)
    ijk_to_ras = geometry.validate_ijk_to_ras(ijk_to_ras)
    threshold = config.threshold if config.threshold is not None else auto_threshold(volume_kji)
    axes_ras = VIEW_AXES_RAS[config.view]
    axis_maps = geometry.match_axes(ijk_to_ras, volume_kji.shape, axes_ras)
    if axis_maps is not None:
        return _project_aligned(volume_kji, ijk_to_ras, axis_maps, threshold, config, progress, should_cancel)
    return _project_oblique(volume_kji, ijk_to_ras, threshold, config, progress, should_cancel)


def _validate_volume(volume_kji: Any) -> NDArray[Any]:
    volume = np.asarray(volume_kji)
    if volume.ndim != 3:
        raise InputError(f"volume must be 3D [k, j, i], got shape {volume.shape}; pass a single scalar volume.")
    if volume.size == 0:
        raise InputError(f"volume is empty (shape {volume.shape}).")
    if not (np.issubdtype(volume.dtype, np.integer) or np.issubdtype(volume.dtype, np.floating)):
        raise InputError(f"volume must hold real numbers, got dtype {volume.dtype}; convert it to a scalar image.")
    return volume


def _ray_statistics(mask_u8: NDArray[np.uint8], depth_axis: int, front_weights: NDArray[Any], gap: int
                    ) -> tuple[NDArray[Any], NDArray[Any]]:
    """Per ray: number of body voxels, and the largest front weight among the surface candidates (0 when none).

    A surface candidate is a body voxel with another body voxel ``|gap|`` voxels deeper (every body voxel if 0);
    deeper is towards higher indices for a positive ``gap``, lower ones for a negative one.
    """
    n = mask_u8.shape[depth_axis]
    count = np.add.reduce(mask_u8, axis=depth_axis, dtype=_index_dtype(n))
    size = min(abs(gap), n)
    low, high = [slice(None)] * mask_u8.ndim, [slice(None)] * mask_u8.ndim
    low[depth_axis], high[depth_axis] = slice(0, n - size), slice(size, n)
    here, deeper = (tuple(low), tuple(high)) if gap >= 0 else (tuple(high), tuple(low))
    candidates = mask_u8[here] & mask_u8[deeper] if size else mask_u8
    front = np.maximum.reduce(candidates * front_weights[here], axis=depth_axis) if candidates.shape[depth_axis] else \
        np.zeros(count.shape, dtype=front_weights.dtype)
    return count, front


def _surface_gap(config: ProjectionConfig, step_mm: float, reversed_axis: bool = False) -> int:
    """``surface_min_mm`` in samples along the ray, negative when the array axis runs against the ray."""
    gap = int(round(config.surface_min_mm / step_mm))
    return -gap if reversed_axis else gap


def _index_dtype(n: int) -> type:
    """The smallest unsigned type that holds the numbers 0..n."""
    return np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32


def _front_weights(n: int, reversed_axis: bool) -> NDArray[Any]:
    """Weights along a ray whose maximum over body voxels gives ``n - steps`` from the front to the first one."""
    idx = np.arange(n)
    return ((idx + 1) if reversed_axis else (n - idx)).astype(_index_dtype(n))


def _finish(count: NDArray[Any], front: NDArray[Any], n_depth: int, step_mm: float, threshold: float,
            config: ProjectionConfig, pixel_to_ras: NDArray[np.float64]) -> ProjectedImage:
    """Turn per-ray counts and front weights (indexed [v, u]) into a ProjectedImage."""
    silhouette = (front > 0) & (count * step_mm >= config.table_removal_mm - 1e-9)
    depth = np.full(count.shape, np.nan, dtype=np.float32)
    depth[silhouette] = (n_depth - front[silhouette].astype(np.float64) - 0.5) * step_mm
    return ProjectedImage(silhouette=silhouette, depth_mm=depth, pixel_to_ras=pixel_to_ras,
                          threshold=float(threshold), view=config.view)


def _project_aligned(volume: NDArray[Any], ijk_to_ras: NDArray[np.float64], maps: list[geometry.AxisMap],
                     threshold: float, config: ProjectionConfig, progress: ProgressCallback | None,
                     should_cancel: CancelCheck | None) -> ProjectedImage:
    """Projection by index arithmetic only: one pass over the array in cache-sized slabs.

    With a pixel size, only the rays of the output pixels (nearest voxel rows and columns) are read, so a coarse
    projection reads a fraction of the volume and equals the full one resampled to nearest neighbours.
    """
    u_map, v_map, d_map = maps
    n_depth = volume.shape[d_map.array_axis]
    spacing_kji = geometry.spacing_mm(ijk_to_ras)[::-1]
    step_mm = float(spacing_kji[d_map.array_axis])
    # The grid origin is the voxel centre at the front-most, first-row, first-column corner.
    corner_kji = [0, 0, 0]
    for m in maps:
        corner_kji[m.array_axis] = volume.shape[m.array_axis] - 1 if m.reversed else 0
    origin_ras = geometry.apply_affine(ijk_to_ras, np.array(corner_kji[::-1], dtype=np.float64))
    spacing_uv = (float(spacing_kji[u_map.array_axis]), float(spacing_kji[v_map.array_axis]))
    # Array indices of the output columns and rows, in view order (flips included).
    picks: dict[int, NDArray[np.intp]] = {}
    for m, spacing in ((u_map, spacing_uv[0]), (v_map, spacing_uv[1])):
        n = volume.shape[m.array_axis]
        samples = _nearest_samples(n, spacing, config.pixel_spacing_mm) if config.pixel_spacing_mm else np.arange(n)
        picks[m.array_axis] = n - 1 - samples if m.reversed else samples
    weight_shape = [1, 1, 1]
    weight_shape[d_map.array_axis] = n_depth
    weights = _front_weights(n_depth, d_map.reversed).reshape(weight_shape)
    # Slab along the slowest array axis that is not the ray axis, so each slab is contiguous in memory.
    slab_axis = 0 if d_map.array_axis != 0 else 1
    other_axis = 3 - slab_axis - d_map.array_axis
    slab_picks, other_picks = picks[slab_axis], picks[other_axis]
    out_axes = [a for a in range(3) if a != d_map.array_axis]  # array axes of the 2D results, in order
    out_shape = tuple(picks[a].size for a in out_axes)
    count = np.empty(out_shape, dtype=_index_dtype(n_depth))
    front = np.empty(out_shape, dtype=weights.dtype)
    slab_out_axis = out_axes.index(slab_axis)
    n_slabs = slab_picks.size
    slab_size = max(1, (1 << 19) // max(1, n_depth * other_picks.size))  # about 512k voxels per slab, fits in L2
    thr = _threshold_for_dtype(threshold, volume.dtype)
    floating = np.issubdtype(volume.dtype, np.floating)
    gap = _surface_gap(config, step_mm, d_map.reversed)
    mask, buffer = None, None
    for start in range(0, n_slabs, slab_size):
        check_cancel(should_cancel)
        stop = min(start + slab_size, n_slabs)
        slices = slab_picks[start:stop]
        if _evenly_spaced(slices) and _evenly_spaced(other_picks):
            slab = _gather(_gather(volume, slices, slab_axis), other_picks, other_axis)
        else:
            shape = list(volume.shape)
            shape[slab_axis], shape[other_axis] = slices.size, other_picks.size
            if buffer is None or buffer.shape != tuple(shape):
                buffer = np.empty(shape, dtype=volume.dtype)
            slab = _take_slices(volume, slab_axis, slices, other_picks, other_axis, buffer)
        if mask is None or mask.shape != slab.shape:
            mask = np.empty(slab.shape, dtype=np.bool_)
        np.greater(slab, thr, out=mask)
        if floating:
            mask &= slab < np.inf  # +inf is no measurement either: air, like NaN
        out_index: list[Any] = [slice(None)] * 2
        out_index[slab_out_axis] = slice(start, stop)
        count[tuple(out_index)], front[tuple(out_index)] = _ray_statistics(mask.view(np.uint8), d_map.array_axis,
                                                                           weights, gap)
        report(progress, stop / n_slabs, "Projecting volume")
    # Reorder the 2D results to [v, u] (the picks already ran in view order).
    order = [out_axes.index(v_map.array_axis), out_axes.index(u_map.array_axis)]
    pixel_to_ras = view_pixel_to_ras(config.view, origin_ras, (config.pixel_spacing_mm,) * 2
                                     if config.pixel_spacing_mm else spacing_uv)
    return _finish(np.ascontiguousarray(count.transpose(order)), np.ascontiguousarray(front.transpose(order)),
                   n_depth, step_mm, threshold, config, pixel_to_ras)


def _threshold_for_dtype(threshold: float, dtype: np.dtype[Any]) -> Any:
    """The threshold as a scalar of the volume's dtype (fast comparison) where that gives the same test."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        floor = np.floor(threshold)
        # For integer voxels, ``x > t`` is ``x > floor(t)``; outside the dtype's range compare as float.
        return dtype.type(floor) if info.min <= floor <= info.max else float(threshold)
    return dtype.type(threshold)


def _evenly_spaced(indices: NDArray[np.intp]) -> bool:
    """Whether ``indices`` (not empty) form a slice: one index, or a constant non-zero step."""
    steps = np.diff(indices)
    return indices.size == 1 or bool(steps[0] != 0 and (steps == steps[0]).all())


def _take_slices(volume: NDArray[Any], slice_axis: int, slices: NDArray[np.intp], indices: NDArray[np.intp],
                 axis: int, out: NDArray[Any]) -> NDArray[Any]:
    """The volume's ``slices`` along ``slice_axis`` and, in each, its ``indices`` along ``axis``, into ``out``.

    numpy's take from a strided view, or of whole slices, copies them first; slice by slice, each picked slice is
    read once and only its picked rows or columns are copied (3.5x faster at a model's 10 mm pixels of a CT).
    """
    axis_in_slice = axis - (axis > slice_axis)
    for n, picked in enumerate(slices):
        source: list[Any] = [slice(None)] * volume.ndim
        target: list[Any] = [slice(None)] * volume.ndim
        source[slice_axis], target[slice_axis] = int(picked), n
        np.take(volume[tuple(source)], indices, axis=axis_in_slice, out=out[tuple(target)], mode="clip")
    return out


def _gather(array: NDArray[Any], indices: NDArray[np.intp], axis: int) -> NDArray[Any]:
    """``np.take(array, indices, axis)``, as a view without copying when the indices are evenly spaced."""
    if indices.size and _evenly_spaced(indices):
        step = int(indices[1] - indices[0]) if indices.size > 1 else 1
        stop = int(indices[-1]) + step
        index: list[Any] = [slice(None)] * array.ndim
        index[axis] = slice(int(indices[0]), stop if stop >= 0 else None, step)
        return array[tuple(index)]
    return np.take(array, indices, axis=axis)


def _nearest_samples(n: int, spacing_mm: float, pixel_spacing_mm: float) -> NDArray[np.intp]:
    """Indices of the voxels nearest to pixels of ``pixel_spacing_mm`` along an axis of ``n`` voxels of
    ``spacing_mm``, pixel 0 on voxel 0, as far as the last voxel centre."""
    count = int(np.floor((n - 1) * spacing_mm / pixel_spacing_mm + 1e-9)) + 1
    return np.clip(np.rint(np.arange(count) * pixel_spacing_mm / spacing_mm).astype(np.intp), 0, n - 1)


def _project_oblique(volume: NDArray[Any], ijk_to_ras: NDArray[np.float64], threshold: float,
                     config: ProjectionConfig, progress: ProgressCallback | None,
                     should_cancel: CancelCheck | None) -> ProjectedImage:
    """Projection of an oblique volume: resampling onto a patient-aligned grid, row by row; trilinear at full
    resolution, nearest voxel for model pixels (``pixel_spacing_mm``), as the aligned path reads the rays nearest to
    them."""
    axes_ras = VIEW_AXES_RAS[config.view]
    # Depth is sampled at the finest voxel spacing whatever the pixel size, so coarse pixels keep exact depths.
    depth_step = float(geometry.spacing_mm(ijk_to_ras).min())
    step = config.pixel_spacing_mm or depth_step
    corners_ijk = np.array([[i, j, k] for i in (0, volume.shape[2] - 1) for j in (0, volume.shape[1] - 1)
                            for k in (0, volume.shape[0] - 1)], dtype=np.float64)
    corners_view = geometry.apply_affine(ijk_to_ras, corners_ijk) @ axes_ras.T  # coordinates along u, v, d axes
    low, high = corners_view.min(axis=0), corners_view.max(axis=0)
    n_u, n_v, n_d = (np.floor((high - low) / np.array([step, step, depth_step]) + 1e-9).astype(int) + 1)
    origin_ras = low @ axes_ras
    pixel_to_ras = view_pixel_to_ras(config.view, origin_ras, (step, step))
    ras_to_ijk = np.linalg.inv(ijk_to_ras)
    # Continuous voxel coordinates of grid point (u, v, d): base + u * du + v * dv + d * dd.
    grid_to_ijk = ras_to_ijk[:3, :3] @ pixel_to_ras[:3, :3] @ np.diag([1.0, 1.0, depth_step])
    base = ras_to_ijk[:3, :3] @ origin_ras + ras_to_ijk[:3, 3]
    du, dv, dd = grid_to_ijk[:, 0], grid_to_ijk[:, 1], grid_to_ijk[:, 2]
    plane = [(np.arange(n_d)[:, None] * dd[a] + np.arange(n_u)[None, :] * du[a]).astype(np.float32) for a in range(3)]
    weights = _front_weights(n_d, reversed_axis=False)[:, None]
    count = np.empty((n_v, n_u), dtype=np.uint32)
    front = np.empty((n_v, n_u), dtype=weights.dtype)
    flat = volume.reshape(-1)
    sample = _nearest if config.pixel_spacing_mm else _trilinear
    gap = _surface_gap(config, depth_step)
    for v in range(n_v):
        check_cancel(should_cancel)
        offset = base + v * dv
        values = sample(flat, volume.shape, [plane[a] + np.float32(offset[a]) for a in range(3)])
        mask = ((values > threshold) & (values < np.inf)).view(np.uint8)
        count[v], front[v] = _ray_statistics(mask, 0, weights, gap)
        report(progress, (v + 1) / n_v, "Resampling oblique volume")
    return _finish(count, front, n_d, depth_step, threshold, config, pixel_to_ras)


def _inside(c: NDArray[np.float32], size: int) -> NDArray[np.bool_]:
    """Continuous voxel coordinates within the voxel centres' span along an axis of ``size`` voxels."""
    return (c >= -1e-4) & (c <= size - 1 + 1e-4)


def _nearest(flat: NDArray[Any], shape_kji: tuple[int, ...], ijk: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """The raveled volume's voxel nearest to continuous coordinates [i, j, k] (rounded in place); outside gives
    -inf."""
    sizes = shape_kji[::-1]  # i, j, k
    strides = (1, shape_kji[2], shape_kji[1] * shape_kji[2])
    inside = _inside(ijk[0], sizes[0]) & _inside(ijk[1], sizes[1]) & _inside(ijk[2], sizes[2])
    index = np.zeros(ijk[0].shape, dtype=np.float64)  # exact for any index of an array that fits in memory
    for a in range(3):
        c = np.clip(np.rint(ijk[a], out=ijk[a]), 0, sizes[a] - 1, out=ijk[a])
        index += c if strides[a] == 1 else c * np.float64(strides[a])
    result = flat.take(index.astype(np.intp)).astype(np.float32)
    result[~inside] = -np.inf
    return result


def _trilinear(flat: NDArray[Any], shape_kji: tuple[int, ...], ijk: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """Trilinear interpolation of the raveled volume at continuous coordinates [i, j, k]; outside gives -inf.

    A sample next to a NaN or infinite voxel is NaN or infinite (air for the threshold test), like that voxel.
    """
    sizes = shape_kji[::-1]  # i, j, k
    strides = (1, shape_kji[2], shape_kji[1] * shape_kji[2])
    inside = np.ones(ijk[0].shape, dtype=bool)
    base = np.zeros(ijk[0].shape, dtype=np.intp)
    fractions, steps = [], []
    for a in range(3):
        c = ijk[a]
        inside &= _inside(c, sizes[a])
        c0 = np.clip(np.floor(c), 0, max(sizes[a] - 2, 0))  # lower corner; its upper neighbour is in the volume
        fractions.append(np.clip(c - c0, 0, 1))
        base += c0.astype(np.intp) * strides[a]
        steps.append(strides[a] if sizes[a] > 1 else 0)
    step_i, step_j, step_k = steps
    f_i, f_j, f_k = fractions

    def along_i(offset: int) -> NDArray[np.float32]:
        low = flat.take(base + offset).astype(np.float32)
        high = flat.take(base + (offset + step_i)).astype(np.float32)
        with np.errstate(invalid="ignore"):  # inf - inf beside infinite voxels gives NaN: air, like those voxels
            return low + f_i * (high - low)

    def along_j(offset: int) -> NDArray[np.float32]:
        low, high = along_i(offset), along_i(offset + step_j)
        with np.errstate(invalid="ignore"):
            return low + f_j * (high - low)

    low, high = along_j(0), along_j(step_k)
    with np.errstate(invalid="ignore"):
        result = low + f_k * (high - low)
    result[~inside] = -np.inf
    return result
