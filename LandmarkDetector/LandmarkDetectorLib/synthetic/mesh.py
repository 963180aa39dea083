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
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

SUBSTEPS = 4096
"""Column coordinates are rounded to this fraction of a column (voxel or pixel) for the exact inside test."""

MAX_PAIRS = 1 << 20
"""Largest number of (triangle, column) candidate pairs tested at once (bounds the temporaries to ~100 MB)."""

_MAX_COORD = 1 << 20
"""Largest |column coordinate| of a vertex (in columns); keeps the integer edge functions far below 2**63."""


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
        shape_kji: volume shape [k, j, i].
    Returns:
        bool mask [k, j, i], True at voxel centres inside the mesh.
    Raises:
        InputError: bad array shapes, face indices out of range, non-finite vertices or singular ijk_to_ras.
    """
    vertices, tris = _validate_mesh(vertices_ras, faces)
    matrix = np.asarray(ijk_to_ras, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise InputError(f"ijk_to_ras must be a finite, invertible 4x4 matrix, got {matrix.tolist()}.")
    shape_ijk = tuple(int(n) for n in shape_kji[::-1])
    if len(shape_ijk) != 3 or min(shape_ijk) < 1:
        raise InputError(f"shape_kji must be three positive sizes, got {shape_kji}.")
    ras_to_ijk = np.linalg.inv(matrix)
    ijk = vertices @ ras_to_ijk[:3, :3].T + ras_to_ijk[:3, 3]
    ray = int(np.argmax(shape_ijk))  # fewest columns, fewest crossings
    col_a, col_b = (n for n in range(3) if n != ray)
    a_q, b_q = _quantize(ijk[:, col_a]), _quantize(ijk[:, col_b])
    along = _quantize(ijk[:, ray]) / SUBSTEPS  # exact integers stay exact: a face on voxel centres follows the tie rule
    # Signed crossings are added at the first voxel behind them (index n_ray collects those behind the volume),
    # then summed along the ray: the winding number at each voxel centre.
    acc_shape = list(shape_kji)
    acc_shape[2 - ray] += 1
    acc = np.zeros(acc_shape, dtype=np.int16)
    for _, ia, ib, t_hit, sign in _crossings(a_q, b_q, along, tris, (shape_ijk[col_a], shape_ijk[col_b])):
        index = np.clip(np.floor(t_hit).astype(np.int64) + 1, 0, shape_ijk[ray])
        where_ijk = [None, None, None]
        where_ijk[col_a], where_ijk[col_b], where_ijk[ray] = ia, ib, index
        np.add.at(acc, (where_ijk[2], where_ijk[1], where_ijk[0]), sign.astype(np.int16))
    winding = np.cumsum(acc, axis=2 - ray, dtype=np.int16)
    return np.take(winding, np.arange(shape_ijk[ray]), axis=2 - ray) != 0


def _validate_mesh(vertices_ras: ArrayLike, faces: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """(V, 3) float64 vertices and (F, 3) int64 faces, checked."""
    vertices = np.asarray(vertices_ras, dtype=np.float64)
    tris = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.all(np.isfinite(vertices)):
        raise InputError(f"vertices_ras must be a finite (V, 3) array, got shape {vertices.shape}.")
    _check_faces(tris, len(vertices))
    return vertices, tris.astype(np.int64)


def _check_faces(tris: NDArray, n_vertices: int) -> None:
    """Raise InputError unless ``tris`` is an (F, 3) integer array of indices below ``n_vertices``."""
    if tris.ndim != 2 or tris.shape[1] != 3 or (tris.size and not np.issubdtype(tris.dtype, np.integer)):
        raise InputError(f"faces must be an (F, 3) integer array, got shape {tris.shape}, dtype {tris.dtype}.")
    if tris.size and (tris.min() < 0 or tris.max() >= n_vertices):
        raise InputError(f"faces index vertices {tris.min()}..{tris.max()}, but there are {n_vertices} vertices.")


def _quantize(coord: NDArray[np.floating]) -> NDArray[np.int64]:
    """Column coordinates -> integers in units of 1 / SUBSTEPS column."""
    if coord.size and np.abs(coord).max() > _MAX_COORD:
        raise InputError(f"mesh vertices lie up to {np.abs(coord).max():.3g} columns (voxels or pixels) from the "
                         f"grid, more than {_MAX_COORD}; crop the mesh or check the units (mm) of the vertices.")
    return np.rint(coord * SUBSTEPS).astype(np.int64)


def _crossings(a_q: NDArray[np.int64], b_q: NDArray[np.int64], t: NDArray[np.floating], tris: NDArray[np.int64],
               shape_ab: tuple[int, int]) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
                                                          NDArray[np.float64], NDArray[np.int64]]]:
    """All ray / triangle crossings of the rays through integer columns (ia, ib), in chunks of <= MAX_PAIRS tests.

    Args:
        a_q, b_q: (V,) vertex column coordinates in 1 / SUBSTEPS units.
        t: (V,) vertex coordinate along the rays.
        tris: (F, 3) vertex indices.
        shape_ab: number of columns along a and b (rays outside are not cast).
    Yields:
        (triangle index, ia, ib, t at the crossing, sign +-1 of the triangle's orientation seen along the ray).
    """
    fa, fb = a_q[tris], b_q[tris]  # (F, 3)
    lo_a = np.maximum(-(-fa.min(axis=1) // SUBSTEPS), 0)  # ceil: first column inside the bounding box
    hi_a = np.minimum(fa.max(axis=1) // SUBSTEPS, shape_ab[0] - 1)
    lo_b = np.maximum(-(-fb.min(axis=1) // SUBSTEPS), 0)
    hi_b = np.minimum(fb.max(axis=1) // SUBSTEPS, shape_ab[1] - 1)
    n_a = hi_a - lo_a + 1
    count = np.where((n_a > 0) & (hi_b >= lo_b), n_a * (hi_b - lo_b + 1), 0)
    candidates = np.flatnonzero(count)
    ends = np.cumsum(count[candidates])
    start = 0
    while start < len(candidates):
        # At least one triangle per chunk, however many columns it covers.
        stop = max(int(np.searchsorted(ends, ends[start] - count[candidates[start]] + MAX_PAIRS, "right")),
                   start + 1)
        chunk = candidates[start:stop]
        yield _test_pairs(chunk, count[chunk], lo_a[chunk], n_a[chunk], lo_b[chunk], fa[chunk], fb[chunk],
                          t[tris[chunk]])
        start = stop


def _test_pairs(tri: NDArray[np.int64], count: NDArray[np.int64], lo_a: NDArray[np.int64], n_a: NDArray[np.int64],
                lo_b: NDArray[np.int64], fa: NDArray[np.int64], fb: NDArray[np.int64], ft: NDArray[np.floating]
                ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64],
                           NDArray[np.int64]]:
    """Point-in-triangle tests of each triangle against the columns of its bounding box; the crossings found."""
    pair = np.repeat(np.arange(len(tri)), count)
    offset = np.arange(len(pair)) - np.repeat(np.cumsum(count) - count, count)
    ia = lo_a[pair] + offset % n_a[pair]
    ib = lo_b[pair] + offset // n_a[pair]
    pa, pb = fa[pair], fb[pair]  # (P, 3)
    ca, cb = ia * SUBSTEPS, ib * SUBSTEPS
    edge = np.empty((len(pair), 3), dtype=np.int64)
    sign = np.empty((len(pair), 3), dtype=np.int64)
    for n in range(3):  # edge opposite vertex n, from vertex n+1 to vertex n+2
        p, q = (n + 1) % 3, (n + 2) % 3
        da, db = pa[:, q] - pa[:, p], pb[:, q] - pb[:, p]
        edge[:, n] = da * (cb - pb[:, p]) - db * (ca - pa[:, p])
        # Ties: the sign after moving the ray by (eps, eps^2), i.e. of -db, then of da.
        sign[:, n] = np.where(edge[:, n] != 0, np.sign(edge[:, n]), np.where(db != 0, -np.sign(db), np.sign(da)))
    hit = (sign[:, 0] != 0) & (sign[:, 0] == sign[:, 1]) & (sign[:, 1] == sign[:, 2])
    edge, ft = edge[hit].astype(np.float64), ft[pair[hit]]
    # Barycentric weights are the edge functions over twice the area, which is not 0 for a hit; relative to
    # vertex 0 so that a face at constant t gives exactly that t.
    t_hit = ft[:, 0] + (edge[:, 1] * (ft[:, 1] - ft[:, 0]) + edge[:, 2] * (ft[:, 2] - ft[:, 0])) / edge.sum(axis=1)
    return tri[pair[hit]], ia[hit], ib[hit], t_hit, sign[hit, 0]
