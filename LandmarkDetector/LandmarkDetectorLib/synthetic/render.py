"""Orthographic silhouette + depth rendering of synthetic anatomy, by analytic ray / round-cone intersection.

Produces what ``projection.project_volume`` gives for a voxelized version of the same anatomy: on a grid
``pixel_to_ras`` (column vector ``(u, v, d, 1)`` -> RAS mm, pixel centres at integers, ``d`` the depth in mm
along the ray from the grid's front plane) a pixel is body where its ray meets the skin, and its depth is
the ``d`` of the first (front) skin surface. The continuous surface depth is up to one voxel smaller than
``project_volume``'s, which reports the centre of the first voxel inside.

Speed: primitives are processed slot by slot over a batch of anatomies that share the same topology, each
primitive only inside its exact projected bounding box, in float32 with origins shifted next to the primitive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..projection import VIEW_AXES_RAS, ProjectedImage, view_pixel_to_ras
from .shapes import Shapes


def render(shapes: Shapes, pixel_to_ras: ArrayLike, shape_vu: tuple[int, int]) -> ProjectedImage:
    """Silhouette and depth of the union of ``shapes`` on one grid.

    Args:
        shapes: the skin surface (e.g. ``Anatomy.skin``), RAS mm.
        pixel_to_ras: 4x4 grid matrix as in ProjectedImage (its third column must be a unit vector).
        shape_vu: (rows, columns) of the image.
    Returns:
        ProjectedImage with the silhouette, depth in mm (NaN outside) and this grid; threshold is NaN (none used).
    """
    p2r = np.asarray(pixel_to_ras, dtype=np.float64)
    depth = render_batch([shapes], p2r[None], shape_vu)[0]
    view = next((name for name, axes in VIEW_AXES_RAS.items() if np.allclose(p2r[:3, 2], axes[2])), "ap")
    silhouette = np.isfinite(depth)
    return ProjectedImage(silhouette=silhouette, depth_mm=np.where(silhouette, depth, np.nan).astype(np.float32),
                          pixel_to_ras=p2r, threshold=float("nan"), view=view)


def render_batch(shapes: Sequence[Shapes], pixel_to_ras: ArrayLike, shape_vu: tuple[int, int]) -> NDArray[np.float32]:
    """Front-surface depth images of many anatomies with the same number of primitives.

    Args:
        shapes: B skins with equal primitive counts (primitive n of each plays the same role).
        pixel_to_ras: (B, 4, 4) or (4, 4) grid matrices.
        shape_vu: (H, W) image size.
    Returns:
        (B, H, W) float32 depth in mm along each ray from the front plane; +inf where the ray misses (background).
    Raises:
        InputError: unequal primitive counts, or a grid whose ray axis is not a unit vector.
    """
    counts = {len(s) for s in shapes}
    if len(counts) != 1:
        raise InputError(f"render_batch needs anatomies with equal primitive counts, got {sorted(counts)}.")
    batch = len(shapes)
    p2r = np.broadcast_to(np.asarray(pixel_to_ras, dtype=np.float64), (batch, 4, 4))
    if not np.allclose(np.linalg.norm(p2r[:, :3, 2], axis=1), 1.0):
        raise InputError("pixel_to_ras's third column (the ray direction) must be a unit vector (depth in mm).")
    h, w = int(shape_vu[0]), int(shape_vu[1])
    m = np.stack([s.ras_from_local for s in shapes])  # (B, N, 3, 4)
    length = np.stack([s.length for s in shapes])
    ra = np.stack([s.radius_a for s in shapes])
    rb = np.stack([s.radius_b for s in shapes])
    u_lo, u_hi, v_lo, v_hi = _pixel_bounds(m, length, ra, rb, p2r)
    lin_inv = np.linalg.inv(m[..., :3])  # (B, N, 3, 3) RAS -> local
    centre = m[..., 3] + m[..., 2] * (length / 2)[..., None]  # (B, N, 3) middle of each primitive
    ray = p2r[:, None, :3, 2]
    t_ref = np.einsum("bni,bni->bn", centre - p2r[:, None, :3, 3], np.broadcast_to(ray, centre.shape))
    # Local coordinates of a ray point: base + u * du + v * dv + t * dd, with t measured from t_ref.
    start = p2r[:, None, :3, 3] + t_ref[..., None] * ray - m[..., 3]
    base = np.einsum("bnij,bnj->bni", lin_inv, start)
    du = np.einsum("bnij,bj->bni", lin_inv, p2r[:, :3, 0])
    dv = np.einsum("bnij,bj->bni", lin_inv, p2r[:, :3, 1])
    dd = np.einsum("bnij,bj->bni", lin_inv, p2r[:, :3, 2])
    sin_taper = np.where(length > 0, (ra - rb) / np.where(length > 0, length, 1.0), 0.0)
    # Per body and primitive: base, du, dv, dd (3 each), then length, radius_a, radius_b, sin_taper, t_ref.
    ray_params = np.concatenate([base, du, dv, dd, np.stack([length, ra, rb, sin_taper, t_ref], axis=-1)], axis=-1)
    depth = np.full(batch * h * w, np.inf, dtype=np.float32)
    for n in range(length.shape[1]):
        lo_u, lo_v = np.maximum(u_lo[:, n], 0), np.maximum(v_lo[:, n], 0)
        width = np.clip(np.minimum(u_hi[:, n], w - 1) - lo_u + 1, 0, None)
        height = np.clip(np.minimum(v_hi[:, n], h - 1) - lo_v + 1, 0, None)
        seen = (width > 0) & (height > 0)
        if seen.any():
            # One window size for all bodies (the largest box), shifted to stay inside the image.
            box = (int(width.max()), int(height.max()))
            corner = (np.minimum(lo_u, w - box[0])[seen], np.minimum(lo_v, h - box[1])[seen])
            _render_slot(depth, ray_params[seen, n], np.flatnonzero(seen), corner, box, (h, w))
    return depth.reshape(batch, h, w)


def _render_slot(depth: NDArray[np.float32], params: NDArray[np.float64], bodies: NDArray[np.int64],
                 corner: tuple[NDArray[np.int64], NDArray[np.int64]], box: tuple[int, int],
                 shape_vu: tuple[int, int]) -> None:
    """Depth-test one primitive of several bodies inside a (box_w, box_h) pixel window at each body's corner."""
    h, w = shape_vu
    u0, v0 = corner
    ju = np.arange(box[0], dtype=np.float32)[None, None, :]
    jv = np.arange(box[1], dtype=np.float32)[None, :, None]
    p32 = params.astype(np.float32)[:, :, None, None]  # (K, 17, 1, 1)
    # Local ray origins at the window's pixels: base + u * du + v * dv (u, v from the window's corner).
    start = params[:, 0:3] + u0[:, None] * params[:, 3:6] + v0[:, None] * params[:, 6:9]
    origin = [start[:, i].astype(np.float32)[:, None, None] + ju * p32[:, 3 + i] + jv * p32[:, 6 + i]
              for i in range(3)]
    t = front_hit(origin[0], origin[1], origin[2], p32[:, 9], p32[:, 10], p32[:, 11], p32[:, 12], p32[:, 13],
                  p32[:, 14], p32[:, 15])
    t += p32[:, 16]
    index = (bodies[:, None, None] * (h * w) + (v0[:, None, None] + np.arange(box[1])[None, :, None]) * w
             + u0[:, None, None] + np.arange(box[0])[None, None, :])
    depth[index] = np.minimum(depth[index], t)


def _pixel_bounds(m: NDArray[np.float64], length: NDArray[np.float64], ra: NDArray[np.float64],
                  rb: NDArray[np.float64], p2r: NDArray[np.float64]) -> tuple[NDArray[np.int64], ...]:
    """Exact projected bounding boxes (inclusive integer pixel ranges) of each primitive: u_lo, u_hi, v_lo, v_hi."""
    r2p = np.linalg.inv(p2r)
    centre_b = m[..., 3] + m[..., 2] * length[..., None]
    out = []
    for row in (0, 1):
        e = r2p[:, row, :3]  # (B, 3) pixel coordinate = e . p + offset
        norm = np.linalg.norm(np.einsum("bnji,bj->bni", m[..., :3], e), axis=-1)
        pa = np.einsum("bni,bi->bn", m[..., 3], e) + r2p[:, row, 3][:, None]
        pb = np.einsum("bni,bi->bn", centre_b, e) + r2p[:, row, 3][:, None]
        low = np.minimum(pa - ra * norm, pb - rb * norm)
        high = np.maximum(pa + ra * norm, pb + rb * norm)
        out += [np.ceil(low - 1e-9).astype(np.int64), np.floor(high + 1e-9).astype(np.int64)]
    return out[0], out[1], out[2], out[3]


def front_hit(ox: NDArray[np.float32], oy: NDArray[np.float32], oz: NDArray[np.float32], dx: NDArray[np.float32],
              dy: NDArray[np.float32], dz: NDArray[np.float32], length: NDArray[np.float32],
              ra: NDArray[np.float32], rb: NDArray[np.float32], s: NDArray[np.float32]) -> NDArray[np.float32]:
    """Ray parameter of the first hit of rays o + t d with local round cones (broadcast arrays); +inf on a miss.

    The union's entry point is the smallest of: the two balls' entry points and the cone side's hits within
    its band between the two tangent circles (every candidate lies on the solid, and the entry is one of them).
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        dd = dx * dx + dy * dy + dz * dz
        od = ox * dx + oy * dy + oz * dz
        q0q0 = ox * ox + oy * oy
        oo = q0q0 + oz * oz
        best = _ball_entry(dd, od, oo - ra * ra)
        best = np.minimum(best, _ball_entry(dd, od - length * dz, oo - 2 * length * oz + length * length - rb * rb))
        c2 = 1 - s * s
        c = np.sqrt(c2)
        h0 = ra - s * oz
        h1 = -s * dz
        qa = c2 * (dx * dx + dy * dy) - h1 * h1
        qb = c2 * (od - oz * dz) - h0 * h1
        qc = c2 * q0q0 - h0 * h0
        root = np.sqrt(qb * qb - qa * qc)
        for t in ((-qb - root) / qa, (-qb + root) / qa):
            h = h0 + h1 * t  # rho * cos(alpha) on the cone side; negative on the mirrored nappe
            along = (oz + t * dz) * c - (h / c) * s
            valid = (h >= 0) & (along >= 0) & (along <= length * c)
            best = np.minimum(best, np.where(valid, t, np.inf))
    return best.astype(np.float32, copy=False)


def _ball_entry(dd: NDArray[np.float32], od: NDArray[np.float32], cc: NDArray[np.float32]) -> NDArray[np.float32]:
    """Entry parameter of rays into a ball (|o + t d - centre|^2 = r^2 with these dot products); +inf on a miss."""
    disc = od * od - dd * cc
    return np.where(disc >= 0, (-od - np.sqrt(np.maximum(disc, 0))) / dd, np.inf)


def frame_grid(shapes: Shapes, shape_vu: tuple[int, int], *, view: str = "ap",
               margin: float = 0.05) -> NDArray[np.float64]:
    """A grid of ``shape_vu`` pixels with square pixels that frames the whole anatomy, centred, with a margin.

    Args:
        shapes: anatomy to frame (its exact bounding box is used).
        shape_vu: (H, W), e.g. (160, 76) for bodies, (96, 96) for hands.
        view: "ap" or "lr" (projection module).
        margin: empty border as a fraction of the image size on each side.
    Returns:
        4x4 pixel_to_ras; the front plane (d = 0) touches the anatomy's nearest point.
    """
    return frame_grids([shapes], shape_vu, view=view, margin=margin)[0]


def frame_grids(shapes: Sequence[Shapes], shape_vu: tuple[int, int], *, view: str = "ap",
                margin: float = 0.05) -> NDArray[np.float64]:
    """``frame_grid`` for many anatomies with equal primitive counts at once: (B, 4, 4)."""
    m = np.stack([s.ras_from_local for s in shapes])  # (B, N, 3, 4)
    length = np.stack([s.length for s in shapes])[..., None]
    ra = np.stack([s.radius_a for s in shapes])[..., None]
    rb = np.stack([s.radius_b for s in shapes])[..., None]
    reach = np.linalg.norm(m[..., :3], axis=-1)  # (B, N, 3): extent of a unit ball along R, A, S
    centre_b = m[..., 3] + m[..., 2] * length
    low = np.minimum(m[..., 3] - ra * reach, centre_b - rb * reach).min(axis=1)  # (B, 3)
    high = np.maximum(m[..., 3] + ra * reach, centre_b + rb * reach).max(axis=1)
    axes = VIEW_AXES_RAS[view]
    # The view axes are signed RAS axes, so the box's extent along u, v, d follows from its corners directly.
    a, b = low @ axes.T, high @ axes.T
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    h, w = shape_vu
    extent = hi - lo
    spacing = np.maximum(extent[:, 0] / max(w - 1, 1), extent[:, 1] / max(h - 1, 1)) / (1 - 2 * margin)
    centre = (lo + hi) / 2
    start = np.stack([centre[:, 0] - spacing * (w - 1) / 2, centre[:, 1] - spacing * (h - 1) / 2, lo[:, 2]], axis=1)
    origins = start @ axes
    return np.stack([view_pixel_to_ras(view, origin, (step, step))
                     for origin, step in zip(origins, spacing, strict=True)])


def grid_at_spacing(shapes: Shapes, spacing_mm: float, *, view: str = "ap",
                    margin_mm: float = 10.0) -> tuple[NDArray[np.float64], tuple[int, int]]:
    """A grid of ``spacing_mm`` square pixels covering the anatomy plus ``margin_mm``: (pixel_to_ras, (H, W))."""
    axes = VIEW_AXES_RAS[view]
    low, high = shapes.bounds_ras()
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
    coords = corners @ axes.T
    lo, hi = coords.min(axis=0) - margin_mm, coords.max(axis=0) + margin_mm
    w, h = (np.ceil((hi[:2] - lo[:2]) / spacing_mm).astype(int) + 1)
    start = np.array([lo[0], lo[1], lo[2]])
    return view_pixel_to_ras(view, start @ axes, (spacing_mm, spacing_mm)), (int(h), int(w))
