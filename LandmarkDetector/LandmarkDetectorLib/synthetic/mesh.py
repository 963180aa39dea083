"""Closed triangle meshes (e.g. ``anny`` bodies, skin surfaces of real anatomy) as voxel masks and depth images.

Both functions cast parallel rays along one axis (a voxel axis, or a grid's ray axis) through the centres of a
regular grid of columns, and find every crossing of every ray with the mesh:

- Column coordinates are rounded to ``1 / SUBSTEPS`` of a column and the point-in-triangle test is done in exact
  integer arithmetic, so the two triangles sharing an edge compute the same edge function with opposite signs.
- Tie rule (a ray exactly through an edge or a vertex): symbolic perturbation. The ray is treated as if moved by
  (eps, eps^2) columns; an edge function that is exactly 0 takes the sign of its derivative along that move.
  The moved ray meets no edge and no vertex, so it crosses a closed mesh an even number of times, and exactly one
  of the triangles around an edge or vertex claims it (or none, or both with opposite signs, at a silhouette).
- Each crossing is signed by the triangle's orientation as seen along the ray, so summing the signs in front of a
  point gives its winding number: inside = winding != 0. Overlapping components (a hand sunk into a thigh, eyes in
  a head) fill their union; a component with reversed winding inside another cuts a cavity.

Speed: a triangle is tested only against the columns inside its bounding box, found for all triangles at once
from four int16 bounds per vertex; most triangles of a body on a coarse grid cover no column, or exactly one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..projection import VIEW_AXES_RAS, ProjectedImage

_SHIFT = 12
SUBSTEPS = 1 << _SHIFT
"""Column coordinates are rounded to this fraction of a column (voxel or pixel) for the exact inside test."""

MAX_COLUMNS = 1 << 14
"""Largest |column coordinate| of a vertex and grid size (in columns); keeps the edge functions below 2**57."""

CHUNK = 1 << 15
"""Triangles (that cover a column) processed at once; with MAX_PAIRS, keeps the temporaries in the CPU cache."""

MAX_PAIRS = 1 << 16
"""Largest number of (triangle, column) pairs tested at once."""

GROUP_TRIANGLES = 1 << 17
"""render_mesh_batch renders its meshes in groups of about this many triangles (faster than all at once: the
per-triangle arrays stay in the CPU cache)."""


def voxelize_mesh(vertices_ras: ArrayLike, faces: ArrayLike, ijk_to_ras: ArrayLike,
                  shape_kji: tuple[int, int, int]) -> NDArray[np.bool_]:
    """Voxel centres inside a closed triangle mesh, by winding number.

    Rays run along the voxel axis with the most voxels, through every voxel-centre column; a voxel is inside
    where the signed count of the surface crossings in front of it (its winding number) is not 0. A crossing
    exactly at a voxel centre counts for the voxels behind it only.

    Args:
        vertices_ras: (V, 3) vertex positions, RAS mm.
        faces: (F, 3) vertex indices of the triangles (consistently oriented; either orientation).
        ijk_to_ras: 4x4 voxel-centre -> RAS mm (any orientation, spacing, oblique included).
        shape_kji: volume shape [k, j, i], at most MAX_COLUMNS - 1 voxels along each axis.
    Returns:
        bool mask [k, j, i], True at voxel centres inside the mesh.
    Raises:
        InputError: bad array shapes, face indices out of range, non-finite vertices, singular ijk_to_ras, or
            vertices more than MAX_COLUMNS voxels from the volume's origin.
    """
    vertices = np.asarray(vertices_ras, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.all(np.isfinite(vertices)):
        raise InputError(f"vertices_ras must be a finite (V, 3) array, got shape {vertices.shape}.")
    tris = _check_faces(faces, len(vertices))
    matrix = np.asarray(ijk_to_ras, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise InputError(f"ijk_to_ras must be a finite, invertible 4x4 matrix, got {matrix.tolist()}.")
    shape_ijk = tuple(int(n) for n in shape_kji[::-1])
    if len(shape_ijk) != 3 or min(shape_ijk) < 1:
        raise InputError(f"shape_kji must be three positive sizes, got {shape_kji}.")
    ras_to_ijk = np.linalg.inv(matrix)
    ijk = ras_to_ijk[:3, :3] @ vertices.T + ras_to_ijk[:3, 3:]  # (3, V)
    ray = int(np.argmax(shape_ijk))  # fewest columns, fewest crossings
    col_a, col_b = (n for n in range(3) if n != ray)
    # Rounded too, so that a face exactly on voxel centres stays there and follows the tie rule.
    along = np.rint(ijk[ray] * SUBSTEPS) / SUBSTEPS
    # Signed crossings are added at the first voxel behind them (index n_ray collects those behind the volume),
    # then summed along the ray: the winding number at each voxel centre.
    acc_shape = list(shape_kji)
    acc_shape[2 - ray] += 1
    acc = np.zeros(acc_shape, dtype=np.int16)
    for _, ia, ib, t_hit, sign in _crossings(ijk[None, col_a], ijk[None, col_b], along[None], tris,
                                             (shape_ijk[col_a], shape_ijk[col_b])):
        index = np.clip(np.floor(t_hit).astype(np.int64) + 1, 0, shape_ijk[ray])
        where_ijk = [index, index, index]
        where_ijk[col_a], where_ijk[col_b] = ia, ib
        np.add.at(acc, (where_ijk[2], where_ijk[1], where_ijk[0]), sign.astype(np.int16))
    np.cumsum(acc, axis=2 - ray, out=acc)
    inside = [slice(None)] * 3
    inside[2 - ray] = slice(0, shape_ijk[ray])
    return acc[tuple(inside)] != 0


def render_mesh(vertices_ras: ArrayLike, faces: ArrayLike, pixel_to_ras: ArrayLike,
                shape_vu: tuple[int, int]) -> ProjectedImage:
    """Silhouette and front-surface depth of one closed mesh on one grid (as ``render.render`` for primitives).

    Args:
        vertices_ras: (V, 3) vertex positions, RAS mm.
        faces: (F, 3) vertex indices of the triangles.
        pixel_to_ras: 4x4 grid matrix as in ProjectedImage (its third column must be a unit vector).
        shape_vu: (rows, columns) of the image.
    Returns:
        ProjectedImage with the silhouette, depth in mm (NaN outside) and this grid; threshold is NaN (none used).
    """
    p2r = np.asarray(pixel_to_ras, dtype=np.float64)
    depth = render_mesh_batch(np.asarray(vertices_ras, dtype=np.float64)[None], faces, p2r[None], shape_vu)[0]
    view = next((name for name, axes in VIEW_AXES_RAS.items() if np.allclose(p2r[:3, 2], axes[2])), "ap")
    silhouette = np.isfinite(depth)
    return ProjectedImage(silhouette=silhouette, depth_mm=np.where(silhouette, depth, np.nan).astype(np.float32),
                          pixel_to_ras=p2r, threshold=float("nan"), view=view)


def render_mesh_batch(vertices_ras: ArrayLike, faces: ArrayLike, pixel_to_ras: ArrayLike,
                      shape_vu: tuple[int, int]) -> NDArray[np.float32]:
    """Front-surface depth images of B closed meshes that share their triangles (e.g. posed bodies).

    A pixel's ray runs through its centre along the grid's third column. Its front surface is where it enters the
    solid that ``voxelize_mesh`` fills: its first crossing with the mesh, since the winding number is 0 in front
    of that and +-1 behind it. Components inside the solid do not show. Only faces turned towards the ray (by the
    sign of each mesh's volume) are tested; the first crossing is one of them wherever no part of the mesh has
    the opposite orientation to the rest, outside of it (that is, the winding number has one sign everywhere:
    true for overlapping components, and for cavities cut by reversed components; a mesh of volume 0 shows
    nothing). Rays through edges and vertices follow ``voxelize_mesh``'s tie rule, so a closed mesh shows no
    pinholes.

    Args:
        vertices_ras: (B, V, 3) vertex positions, RAS mm.
        faces: (F, 3) vertex indices of the triangles.
        pixel_to_ras: (B, 4, 4) or (4, 4) grid matrices (column vector (u, v, d, 1) -> RAS mm).
        shape_vu: (H, W) image size, at most MAX_COLUMNS - 1 each.
    Returns:
        (B, H, W) float32 depth in mm along each ray from the grid's front plane (negative in front of it);
        +inf where the ray misses (background).
    Raises:
        InputError: bad array shapes or face indices, non-finite vertices, a grid whose ray axis is not a unit
            vector, or vertices more than MAX_COLUMNS pixels from the grid's origin.
    """
    vertices = np.asarray(vertices_ras, dtype=np.float64)
    if vertices.ndim != 3 or vertices.shape[2] != 3 or not np.all(np.isfinite(vertices)):
        raise InputError(f"vertices_ras must be a finite (B, V, 3) array, got shape {vertices.shape}.")
    tris = _check_faces(faces, vertices.shape[1])
    batch = len(vertices)
    p2r = np.broadcast_to(np.asarray(pixel_to_ras, dtype=np.float64), (batch, 4, 4))
    if not np.allclose(np.linalg.norm(p2r[:, :3, 2], axis=1), 1.0):
        raise InputError("pixel_to_ras's third column (the ray direction) must be a unit vector (depth in mm).")
    h, w = int(shape_vu[0]), int(shape_vu[1])
    r2p = np.linalg.inv(p2r)
    depth = np.full((batch, h * w), np.inf, dtype=np.float32)
    group = max(1, GROUP_TRIANGLES // max(len(tris), 1))
    for start in range(0, batch, group):
        part = slice(start, start + group)
        uvd = r2p[part, :3, :3] @ vertices[part].transpose(0, 2, 1) + r2p[part, :3, 3:]  # (group, 3, V)
        # A ray enters a solid of positive volume (in (u, v, d) coordinates) through faces of negative (u, v) area.
        entry_sign = -np.sign(_signed_volumes(uvd, tris)).astype(np.int64)
        out = depth[part].reshape(-1)  # a view
        for mesh, iu, iv, d, _ in _crossings(uvd[:, 0], uvd[:, 1], uvd[:, 2], tris, (w, h), entry_sign):
            np.minimum.at(out, (mesh * h + iv) * w + iu, d.astype(np.float32))
    return depth.reshape(batch, h, w)


def _signed_volumes(points: NDArray[np.float64], tris: NDArray[np.int64]) -> NDArray[np.float64]:
    """(B,) signed volumes of B closed meshes (points: (B, 3, V)), positive for faces turned out."""
    x, y, z = (np.ascontiguousarray(points[:, n], dtype=np.float32) for n in range(3))  # plenty for the sign
    x0, x1, x2 = (np.take(x, tris[:, n], axis=1) for n in range(3))
    y0, y1, y2 = (np.take(y, tris[:, n], axis=1) for n in range(3))
    z_sum = np.take(z, tris[:, 0], axis=1) + np.take(z, tris[:, 1], axis=1) + np.take(z, tris[:, 2], axis=1)
    # Divergence theorem with the field (0, 0, z): the sum of the faces' (x, y) areas times their mean z.
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    return np.einsum("bf,bf->b", area2, z_sum, dtype=np.float64) / 6


def _check_faces(faces: ArrayLike, n_vertices: int) -> NDArray[np.int64]:
    """``faces`` as an (F, 3) int64 array, checked against the number of vertices."""
    tris = np.asarray(faces)
    if tris.ndim != 2 or tris.shape[1] != 3 or (tris.size and not np.issubdtype(tris.dtype, np.integer)):
        raise InputError(f"faces must be an (F, 3) integer array, got shape {tris.shape}, dtype {tris.dtype}.")
    if tris.size and (tris.min() < 0 or tris.max() >= n_vertices):
        raise InputError(f"faces index vertices {tris.min()}..{tris.max()}, but there are {n_vertices} vertices.")
    return tris.astype(np.int64)


def _quantize(coord: NDArray[np.floating]) -> NDArray[np.int64]:
    """Column coordinates -> integers in units of 1 / SUBSTEPS column."""
    scaled = coord * SUBSTEPS
    if scaled.size and max(-scaled.min(), scaled.max()) > MAX_COLUMNS * SUBSTEPS:
        raise InputError(f"mesh vertices lie up to {np.abs(coord).max():.3g} columns (voxels or pixels) from the "
                         f"grid's origin, more than {MAX_COLUMNS}; crop the mesh or check that its units are mm.")
    return np.rint(scaled).astype(np.int64)


def _crossings(a: NDArray[np.floating], b: NDArray[np.floating], t: NDArray[np.floating], tris: NDArray[np.int64],
               shape_ab: tuple[int, int], only_sign: NDArray[np.int64] | None = None
               ) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64],
                                   NDArray[np.int64]]]:
    """All crossings of B meshes with the rays through integer columns (ia, ib), in chunks.

    Args:
        a, b: (B, V) vertex column coordinates (in columns).
        t: (B, V) vertex coordinates along the rays.
        tris: (F, 3) vertex indices, shared by the B meshes.
        shape_ab: number of columns along a and b (rays outside are not cast).
        only_sign: (B,) if given, only the crossings with this sign are found (+-1 per mesh).
    Yields:
        (mesh index, ia, ib, t at the crossing, sign +-1 of the triangle's orientation seen along the ray).
    """
    n_a, n_b = shape_ab
    if max(n_a, n_b) >= MAX_COLUMNS:
        raise InputError(f"grids of up to {MAX_COLUMNS - 1} columns per axis are supported, got {shape_ab}.")
    a_q, b_q = _quantize(a), _quantize(b)
    # Per vertex, four int16 lanes packed in one int64: ceil(a), -floor(a), ceil(b), -floor(b), clipped to the
    # grid; their minimum over a triangle's corners is its inclusive column box (lo_a, -hi_a, lo_b, -hi_b).
    lanes = np.empty(a_q.shape + (4,), dtype=np.int16)
    for lane, q, n in ((0, a_q, n_a), (2, b_q, n_b)):
        lanes[..., lane] = np.clip(-(-q >> _SHIFT), 0, n)
        lanes[..., lane + 1] = np.clip(q >> _SHIFT, -1, n - 1)
        np.negative(lanes[..., lane + 1], out=lanes[..., lane + 1])
    packed = lanes.view(np.int64)[..., 0]  # (B, V)
    box = np.take(packed, tris[:, 0], axis=1)
    for n in (1, 2):
        box = np.minimum(box.view(np.int16), np.take(packed, tris[:, n], axis=1).view(np.int16)).view(np.int64)
    box = box.ravel()  # (B * F,)
    box16 = box.view(np.int16).reshape(-1, 4)
    candidates = np.flatnonzero((box16[:, 0] + box16[:, 1] <= 0) & (box16[:, 2] + box16[:, 3] <= 0))
    flat_a, flat_b, flat_t = a_q.ravel(), b_q.ravel(), t.ravel()
    tri_columns = np.ascontiguousarray(tris.T)
    for start in range(0, len(candidates), CHUNK):
        chunk = candidates[start:start + CHUNK]
        mesh, face = np.divmod(chunk, len(tris))
        corners = np.take(tri_columns, face, axis=1) + mesh * a_q.shape[1]  # (3, N) flat vertex indices
        fa, fb = np.take(flat_a, corners), np.take(flat_b, corners)
        if only_sign is not None:  # cull by the sign of the (u, v) area, as _edge_planes computes it
            two_area = (fa[1] - fa[0]) * (fb[2] - fb[0]) - (fa[2] - fa[0]) * (fb[1] - fb[0])
            keep = np.flatnonzero(np.sign(two_area) == only_sign[mesh])
            chunk, mesh, corners, fa, fb = chunk[keep], mesh[keep], corners[:, keep], fa[:, keep], fb[:, keep]
        lo = np.take(box, chunk).view(np.int16).reshape(-1, 4).T.astype(np.int64)  # (4, N)
        planes = _edge_planes(lo[0], lo[2], fa, fb, np.take(flat_t, corners))
        yield from _hits(planes, mesh, lo[0], 1 - lo[1] - lo[0], lo[2], 1 - lo[3] - lo[2])


class _Planes(NamedTuple):
    """Edge functions and depth of N triangles as planes over their column boxes (see ``_edge_planes``)."""

    c: NDArray[np.int64]  # (3, N)
    x: NDArray[np.int64]  # (3, N)
    y: NDArray[np.int64]  # (3, N)
    t0: NDArray[np.float64]
    tx: NDArray[np.float64]
    ty: NDArray[np.float64]
    sign: NDArray[np.int64]


def _edge_planes(lo_a: NDArray[np.int64], lo_b: NDArray[np.int64], fa: NDArray[np.int64], fb: NDArray[np.int64],
                 ft: NDArray[np.floating]) -> _Planes:
    """Edge functions and depth of triangles (corners fa, fb, ft: (3, N)) over their column boxes.

    At the column (lo_a + oa, lo_b + ob) the ray crosses the triangle when c_n + x_n * oa + y_n * ob > 0 for the
    three edges n (exact integers: twice the edge function, plus the tie rule's sign where it is 0, times the
    orientation sign), at t = t0 + tx * oa + ty * ob.
    """
    ra = fa - (lo_a << _SHIFT)  # corners relative to the box's first column
    rb = fb - (lo_b << _SHIFT)
    pa, pb = ra[[1, 2, 0]], rb[[1, 2, 0]]  # edge n runs from corner n+1 (p) to corner n+2
    da, db = ra[[2, 0, 1]] - pa, rb[[2, 0, 1]] - pb
    k = db * pa - da * pb  # cross(q - p, c - p) at the box's first column
    two_area = k[0] + k[1] + k[2]  # the edge functions sum to twice the signed area everywhere
    sign = np.sign(two_area)
    # Tie rule: the sign after moving the ray by (eps, eps^2) columns: that of -db, or of da where db is 0
    # (|da| < 2**28, so the shifted -db decides whenever it is not 0).
    tie = np.sign(da - (db << 30))
    step = 2 * SUBSTEPS * sign
    with np.errstate(divide="ignore", invalid="ignore"):  # flat triangles (area 0) are never crossed
        rise1, rise2 = (ft[1] - ft[0]) / two_area, (ft[2] - ft[0]) / two_area
        t0 = ft[0] + k[1] * rise1 + k[2] * rise2
        tx = -SUBSTEPS * (db[1] * rise1 + db[2] * rise2)
        ty = SUBSTEPS * (da[1] * rise1 + da[2] * rise2)
    return _Planes((2 * k + tie) * sign, -step * db, step * da, t0, tx, ty, sign)


def _hits(planes: _Planes, mesh: NDArray[np.int64], lo_a: NDArray[np.int64], n_a: NDArray[np.int64],
          lo_b: NDArray[np.int64], n_b: NDArray[np.int64]) -> Iterator[tuple[NDArray[np.int64], ...]]:
    """Test each triangle against the columns of its box; yields the crossings as ``_crossings`` does."""
    count = n_a * n_b
    # Most triangles of a fine mesh on a coarse grid cover one column: the test is the sign of c there.
    single = count == 1
    hit = np.flatnonzero(single & (planes.c[0] > 0) & (planes.c[1] > 0) & (planes.c[2] > 0))
    yield mesh[hit], lo_a[hit], lo_b[hit], planes.t0[hit], planes.sign[hit]
    multi = np.flatnonzero(~single)
    ends = np.cumsum(count[multi])
    start = 0
    while start < len(multi):
        # At least one triangle per chunk, however many columns it covers.
        stop = max(int(np.searchsorted(ends, ends[start] - count[multi[start]] + MAX_PAIRS, "right")), start + 1)
        tri = multi[start:stop]
        pair = np.repeat(tri, count[tri])
        offset = np.arange(len(pair)) - np.repeat(np.cumsum(count[tri]) - count[tri], count[tri])
        ob = offset // np.take(n_a, pair)
        oa = offset - ob * np.take(n_a, pair)
        inside = np.ones(len(pair), dtype=bool)
        for n in range(3):
            inside &= (np.take(planes.c[n], pair) + np.take(planes.x[n], pair) * oa
                       + np.take(planes.y[n], pair) * ob) > 0
        hit = np.flatnonzero(inside)
        pair, oa, ob = pair[hit], oa[hit], ob[hit]
        yield (mesh[pair], lo_a[pair] + oa, lo_b[pair] + ob, planes.t0[pair] + planes.tx[pair] * oa
               + planes.ty[pair] * ob, planes.sign[pair])
        start = stop
