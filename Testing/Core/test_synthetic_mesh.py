"""Triangle meshes: winding-number voxelization and front-surface rendering, against exact point-in-mesh tests.

The test meshes are convex (icospheres, boxes, octahedra) or unions / differences of convex ones, so a voxel centre
is inside exactly when it lies behind every face plane; such centres are checked exactly, under any orientation.
"""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkDetectorLib.synthetic.mesh import voxelize_mesh
from LandmarkDetectorLib.synthetic.scan import PATIENT_POSITIONS, grid_covering
from LandmarkDetectorLib.synthetic.shapes import rotate, unit


def _icosphere(level: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere (outward faces) subdivided ``level`` times: 20 * 4**level triangles."""
    g = (1 + 5 ** 0.5) / 2
    vertices = np.array([(-1, g, 0), (1, g, 0), (-1, -g, 0), (1, -g, 0), (0, -1, g), (0, 1, g), (0, -1, -g),
                         (0, 1, -g), (g, 0, -1), (g, 0, 1), (-g, 0, -1), (-g, 0, 1)], dtype=np.float64)
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    faces = np.array([(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
                      (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
                      (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)])
    for _ in range(level):
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        middle = vertices[unique].mean(axis=1)
        middle /= np.linalg.norm(middle, axis=1, keepdims=True)
        m = inverse.reshape(3, -1).T + len(vertices)  # midpoints of edges 01, 12, 20 of each face
        vertices = np.concatenate([vertices, middle])
        faces = np.concatenate([np.stack([faces[:, 0], m[:, 0], m[:, 2]], axis=1),
                                np.stack([faces[:, 1], m[:, 1], m[:, 0]], axis=1),
                                np.stack([faces[:, 2], m[:, 2], m[:, 1]], axis=1), m])
    return vertices, faces


def _box(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box with outward faces (12 triangles)."""
    vertices = np.array([[(low, high)[(n >> a) & 1][a] for a in range(3)] for n in range(8)], dtype=np.float64)
    quads = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    faces = np.array([tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))])
    return vertices, faces


def _octahedron(centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Regular octahedron with outward faces and vertices at centre +- radius along each axis."""
    vertices = centre + radius * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1.0]])
    faces = np.array([(0, 2, 4), (2, 1, 4), (1, 3, 4), (3, 0, 4), (2, 0, 5), (1, 2, 5), (3, 1, 5), (0, 3, 5)])
    return vertices, faces


def _sphere(centre, radius: float, level: int = 3) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = _icosphere(level)
    return vertices * radius + np.asarray(centre, dtype=np.float64), faces


def _join(*meshes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One mesh made of several components."""
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes])
    return (np.concatenate([v for v, _ in meshes]),
            np.concatenate([f + offset for (_, f), offset in zip(meshes, offsets, strict=False)]))


def _plane_distance(mesh: tuple[np.ndarray, np.ndarray], points: np.ndarray) -> np.ndarray:
    """Largest signed distance of points to the face planes of a convex mesh (< 0 inside, > 0 outside)."""
    vertices, faces = mesh
    v0, v1, v2 = (vertices[faces[:, n]] for n in range(3))
    normal = np.cross(v1 - v0, v2 - v0)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    offset = np.einsum("fi,fi->f", normal, v0)
    distance = np.full(points.shape[:-1], -np.inf)
    for n, c in zip(normal, offset, strict=True):
        np.maximum(distance, points @ n - c, out=distance)
    return distance


def _centres_ras(ijk_to_ras: np.ndarray, shape_kji: tuple[int, int, int]) -> np.ndarray:
    """(K, J, I, 3) RAS positions of the voxel centres."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape_kji), indexing="ij")
    return np.stack([i, j, k], axis=-1) @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]


def _oblique(seed: int, angle_deg: float = 20.0) -> np.ndarray:
    axis = unit(np.random.default_rng(seed).normal(size=3))
    return np.stack([rotate(e, axis, angle_deg) for e in np.eye(3)], axis=1)


ORIENTATIONS = {  # voxel axes as RAS unit columns, voxel spacing (i, j, k) mm
    "ras": (np.eye(3), (1.0, 1.0, 1.0)),
    "lps": (np.diag([-1.0, -1.0, 1.0]), (1.0, 1.0, 1.0)),
    "feet-first-flipped": (PATIENT_POSITIONS["FFS"] * np.array([-1.0, 1.0, -1.0]), (1.0, 1.0, 1.0)),
    "anisotropic": (np.diag([-1.0, -1.0, 1.0]), (0.7, 1.3, 2.1)),
    "oblique": (_oblique(3) @ np.diag([-1.0, -1.0, 1.0]), (0.9, 0.9, 1.6)),
}


def _grid(orientation: str, low, high, margin: float = 3.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    direction, spacing = ORIENTATIONS[orientation]
    return grid_covering(direction, np.array(spacing), np.asarray(low) - margin, np.asarray(high) + margin)


def _check_convex_union(mask: np.ndarray, distance: np.ndarray, tolerance: float = 1e-6) -> None:
    """Voxels clearly inside (distance < -tol) are set, clearly outside (> tol) are not."""
    assert mask[distance < -tolerance].all()
    assert not mask[distance > tolerance].any()


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_sphere_voxels_are_the_centres_inside(orientation: str) -> None:
    centre, radius = np.array([3.3, -7.1, 12.4]), 9.0
    mesh = _sphere(centre, radius)
    ijk_to_ras, shape_kji = _grid(orientation, centre - radius, centre + radius)
    mask = voxelize_mesh(*mesh, ijk_to_ras, shape_kji)
    assert mask.shape == shape_kji
    _check_convex_union(mask, _plane_distance(mesh, _centres_ras(ijk_to_ras, shape_kji)))
    voxel_mm3 = abs(np.linalg.det(ijk_to_ras[:3, :3]))
    assert mask.sum() * voxel_mm3 == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.03)
    # The voxel holding the centre is set, and the mask's centroid is the sphere's centre.
    ijk = np.rint(np.linalg.solve(ijk_to_ras, np.append(centre, 1.0))[:3]).astype(int)
    assert mask[ijk[2], ijk[1], ijk[0]]
    kji = np.argwhere(mask).mean(axis=0)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    np.testing.assert_allclose(ijk_to_ras[:3, :3] @ kji[::-1] + ijk_to_ras[:3, 3], centre, atol=0.1 * spacing.max())


@pytest.mark.parametrize("orientation", ["ras", "lps", "feet-first-flipped", "anisotropic"])
def test_box_voxel_count_is_exact(orientation: str) -> None:
    low, high = np.array([-10.37, 4.21, -3.55]), np.array([6.62, 17.8, 20.15])
    ijk_to_ras, shape_kji = _grid(orientation, low - 0.1234, high + 0.4321)
    mask = voxelize_mesh(*_box(low, high), ijk_to_ras, shape_kji)
    centres = _centres_ras(ijk_to_ras, shape_kji)
    assert np.abs(centres - low).min() > 0.01 and np.abs(centres - high).min() > 0.01  # no centre on a face
    assert np.array_equal(mask, np.all((centres > low) & (centres < high), axis=-1))
    # On an axis-aligned grid the count is the product of the voxel centres inside along each RAS axis.
    coords = [np.unique(np.round(centres[..., a], 6)) for a in range(3)]
    assert mask.sum() == np.prod([np.sum((c > lo) & (c < hi)) for c, lo, hi in zip(coords, low, high, strict=True)])


@pytest.mark.parametrize("orientation", ["ras", "anisotropic", "oblique"])
@pytest.mark.parametrize("shape_kji", [(23, 25, 21), (29, 25, 21), (23, 25, 31)])
def test_vertices_and_edges_on_voxel_columns_leave_no_stray_voxels(orientation: str, shape_kji) -> None:
    """An octahedron and a box with vertices and faces at voxel centres: many rays run through vertices, edges
    and faces, along each voxel axis in turn (the longest one)."""
    ijk_to_ras, _ = _grid(orientation, np.zeros(3), np.zeros(3))
    octahedron = _octahedron(np.array([10.0, 12.0, 11.0]), 6.0)
    box = _box(np.array([2.0, 2.0, 2.0]), np.array([6.0, 8.0, 5.0]))
    vertices_ijk, faces = _join(octahedron, box)
    mask = voxelize_mesh(vertices_ijk @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3], faces, ijk_to_ras, shape_kji)
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape_kji), indexing="ij")
    in_octahedron = np.abs(i - 10) + np.abs(j - 12) + np.abs(k - 11) - 6
    in_box = np.maximum.reduce([np.maximum(2 - i, i - 6), np.maximum(2 - j, j - 8), np.maximum(2 - k, k - 5)])
    assert mask[(in_octahedron < 0) | (in_box < 0)].all()
    assert not mask[(in_octahedron > 0) & (in_box > 0)].any()
    # Half-open rules: a box with faces on voxel centres covers its volume's worth of voxels.
    assert mask[in_box <= 0].sum() == 4 * 6 * 3


def test_overlapping_components_fill_their_union_and_reversed_ones_cut_cavities() -> None:
    big = _sphere([0.0, 0.0, 0.0], 12.0)
    other = _sphere([9.0, 2.0, -3.0], 7.0)  # partly inside big
    inner = _sphere([-2.0, 1.0, 1.0], 5.0)  # entirely inside big
    ijk_to_ras, shape_kji = _grid("oblique", [-13.0] * 3, [17.0] * 3)
    centres = _centres_ras(ijk_to_ras, shape_kji)
    d_big, d_other, d_inner = (_plane_distance(m, centres) for m in (big, other, inner))
    union = voxelize_mesh(*_join(big, other, inner), ijk_to_ras, shape_kji)
    _check_convex_union(union, np.minimum(d_big, d_other))
    reversed_inner = (inner[0], inner[1][:, ::-1])
    shell = voxelize_mesh(*_join(big, reversed_inner), ijk_to_ras, shape_kji)
    _check_convex_union(shell, np.maximum(d_big, -d_inner))
    # A mesh with all faces reversed (winding -1 inside) fills the same voxels.
    flipped = voxelize_mesh(big[0], big[1][:, ::-1], ijk_to_ras, shape_kji)
    assert np.array_equal(flipped, voxelize_mesh(*big, ijk_to_ras, shape_kji))
