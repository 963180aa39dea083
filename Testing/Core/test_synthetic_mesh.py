"""Triangle meshes: winding-number voxelization and front-surface rendering, against exact point-in-mesh tests.

The test meshes are convex (icospheres, boxes, octahedra) or unions / differences of convex ones, so a voxel centre
is inside exactly when it lies behind every face plane; such centres are checked exactly, under any orientation.
"""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkDetectorLib.errors import InputError
from LandmarkDetectorLib.projection import ProjectionConfig, project_volume, view_pixel_to_ras
from LandmarkDetectorLib.synthetic import mesh as mesh_module
from LandmarkDetectorLib.synthetic.mesh import render_mesh, render_mesh_batch, voxelize_mesh
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


def _heightfield(top_d: np.ndarray, bottom_d: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed block over the lattice [0, n_u) x [0, n_v) in (u, v, d): top at depth top_d[v, u], flat bottom."""
    n_v, n_u = top_d.shape
    v, u = np.meshgrid(np.arange(n_v), np.arange(n_u), indexing="ij")
    top = np.stack([u, v, top_d], axis=-1).reshape(-1, 3)
    vertices = np.concatenate([top, top * [1, 1, 0] + [0, 0, bottom_d]]).astype(np.float64)
    index = np.arange(n_u * n_v).reshape(n_v, n_u)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, 1:].ravel(), index[1:, :-1].ravel()
    top_faces = np.concatenate([np.stack([a, c, b], axis=1), np.stack([a, d, c], axis=1)])
    ring = np.concatenate([index[0, :-1], index[:-1, -1], index[-1, :0:-1], index[:0:-1, 0]])  # the boundary
    p, q = ring, np.roll(ring, -1)
    below = n_u * n_v
    sides = np.concatenate([np.stack([p, q, q + below], axis=1), np.stack([p, q + below, p + below], axis=1)])
    return vertices, np.concatenate([top_faces, top_faces[:, ::-1] + below, sides])


def _volume(mesh: tuple[np.ndarray, np.ndarray]) -> float:
    vertices, faces = mesh
    v0, v1, v2 = (vertices[faces[:, n]] for n in range(3))
    return float(np.einsum("fi,fi->", v0, np.cross(v1, v2)) / 6)


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


def _body_like(level: int = 3, scale: float = 1.0, shift=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """A 1.7 m 'body' of overlapping ellipsoids (torso, head, arms, legs), 6 * 20 * 4**level triangles."""
    unit_sphere = _icosphere(level)
    parts = [((0, 0, 1250), (170, 110, 300)), ((0, 10, 1600), (80, 95, 110)), ((-230, 0, 1200), (45, 45, 330)),
             ((230, 0, 1200), (45, 45, 330)), ((-90, 0, 450), (75, 75, 450)), ((90, 0, 450), (75, 75, 450))]
    return _join(*[(unit_sphere[0] * np.array(size) * scale + np.array(centre) * scale + shift, unit_sphere[1])
                   for centre, size in parts])


def _convex_entry(mesh: tuple[np.ndarray, np.ndarray], pixel_to_ras: np.ndarray,
                  shape_vu: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit depth of each pixel's ray through a convex mesh (entry > exit where the ray misses)."""
    vertices, faces = mesh
    v0, v1, v2 = (vertices[faces[:, n]] for n in range(3))
    normal = np.cross(v1 - v0, v2 - v0)
    v, u = np.meshgrid(np.arange(shape_vu[0]), np.arange(shape_vu[1]), indexing="ij")
    origin = np.stack([u, v, np.zeros_like(u), np.ones_like(u)], axis=-1) @ pixel_to_ras[:3].T  # (H, W, 3)
    facing = normal @ pixel_to_ras[:3, 2]
    gap = np.einsum("fi,fi->f", normal, v0) - origin @ normal.T  # (H, W, F), < 0 outside the face's plane
    with np.errstate(divide="ignore", invalid="ignore"):
        t = gap / facing
    entry = np.where(facing < 0, t, np.where((facing == 0) & (gap < 0), np.inf, -np.inf)).max(axis=-1)
    return entry, np.where(facing > 0, t, np.inf).min(axis=-1)


def _check_render(depth: np.ndarray, entry: np.ndarray, exit_: np.ndarray) -> None:
    """Hits where the ray clearly crosses the solid, at the entry depth; misses where it clearly misses.

    Depth is within 0.01 mm: vertices are rounded to 1/4096 pixel, and faces at the rim are steep.
    """
    chord = exit_ - entry
    assert np.all(np.isfinite(depth[chord > 1e-3]))
    np.testing.assert_allclose(depth[chord > 1e-3], entry[chord > 1e-3], atol=0.01)
    assert not np.isfinite(depth[chord < -1e-3]).any()


GRIDS = {  # pixel_to_ras of 1 x 1.5 mm pixels looking at the origin from 30 mm away
    "ap": view_pixel_to_ras("ap", [20.0, -30.0, 24.0], (1.0, 1.5)),
    "lr": view_pixel_to_ras("lr", [-30.0, 20.0, 24.0], (1.0, 1.5)),
    "ap-mirrored": view_pixel_to_ras("ap", [-20.0, -30.0, 24.0], (1.0, 1.5)) @ np.diag([-1.0, 1.0, 1.0, 1.0]),
    "oblique": np.vstack([np.hstack([_oblique(5) @ np.array([[-1.0, 0, 0], [0, 0, -1.0], [0, -1.0, 0]])
                                     @ np.diag([1.0, 1.5, 1.0]), [[20.0], [-30.0], [24.0]]]), [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("grid", GRIDS)
def test_sphere_render_is_the_exact_front_surface(grid: str) -> None:
    mesh = _sphere([1.3, 2.2, -0.7], 12.0)
    pixel_to_ras, shape_vu = GRIDS[grid], (36, 44)
    if grid == "oblique":  # recentre the rotated grid on the sphere
        pixel_to_ras = pixel_to_ras.copy()
        pixel_to_ras[:3, 3] += [1.3, 2.2, -0.7] - pixel_to_ras[:3] @ [21.5, 17.5, 30.0, 1.0]
    image = render_mesh(*mesh, pixel_to_ras, shape_vu)
    entry, exit_ = _convex_entry(mesh, pixel_to_ras, shape_vu)
    _check_render(np.where(image.silhouette, image.depth_mm, np.inf), entry, exit_)
    assert image.view == ("lr" if grid == "lr" else "ap")
    # The disk's radius and the sphere's nearest depth, to within the polyhedron's flattening (0.1 mm here).
    spacing = np.array(image.pixel_spacing_mm)
    assert image.silhouette.sum() * spacing.prod() == pytest.approx(np.pi * 12.0 ** 2, rel=0.03)
    centre_uvd = image.ras_to_uvd([[1.3, 2.2, -0.7]])[0]
    assert np.nanmin(image.depth_mm) == pytest.approx(centre_uvd[2] - 12.0, abs=0.15)
    # Reversed faces render the same.
    flipped = render_mesh(mesh[0], mesh[1][:, ::-1], pixel_to_ras, shape_vu)
    assert np.array_equal(flipped.silhouette, image.silhouette)
    np.testing.assert_array_equal(flipped.depth_mm[image.silhouette], image.depth_mm[image.silhouette])


def test_overlapping_and_inner_components_render_the_union_front() -> None:
    big, other = _sphere([0.0, 0.0, 0.0], 12.0), _sphere([9.0, 2.0, -3.0], 7.0)
    inner = _sphere([-2.0, -1.0, 1.0], 5.0)
    pixel_to_ras = view_pixel_to_ras("ap", [20.0, -30.0, 20.0], (1.0, 1.0))
    (front_a, back_a), (front_b, back_b) = (_convex_entry(mesh, pixel_to_ras, (40, 42)) for mesh in (big, other))
    joined = _join(big, other, inner)
    union = render_mesh_batch(joined[0][None], joined[1], pixel_to_ras, (40, 42))[0]
    near = np.minimum(np.where(back_a > front_a, front_a, np.inf), np.where(back_b > front_b, front_b, np.inf))
    with np.errstate(invalid="ignore"):  # inf - inf where both rays miss
        clear = ((back_a - front_a > 1e-3) | (back_b - front_b > 1e-3)) & (np.abs(front_a - front_b) > 1e-3)
    np.testing.assert_allclose(union[clear], near[clear], atol=0.01)
    assert not np.isfinite(union[(back_a - front_a < -1e-3) & (back_b - front_b < -1e-3)]).any()
    # A reversed component inside (a cavity) does not show.
    cavity = _join(big, (inner[0], inner[1][:, ::-1]))
    alone = render_mesh_batch(big[0][None], big[1], pixel_to_ras, (40, 42))
    np.testing.assert_array_equal(render_mesh_batch(cavity[0][None], cavity[1], pixel_to_ras, (40, 42)), alone)


@pytest.mark.parametrize("grid", ["ap", "ap-mirrored", "oblique"])
def test_rays_through_mesh_vertices_render_without_pinholes(grid: str) -> None:
    """A block whose top is triangulated on the pixel lattice: every ray inside runs through a vertex."""
    top_d = np.random.default_rng(7).uniform(1.0, 3.0, size=(9, 12))
    vertices_uvd, faces = _heightfield(top_d, 10.0)
    pixel_to_ras = GRIDS[grid]
    vertices_ras = vertices_uvd @ pixel_to_ras[:3, :3].T + pixel_to_ras[:3, 3]
    depth = render_mesh_batch(vertices_ras[None], faces, pixel_to_ras, (11, 14))[0]
    # The tie rule gives each ray to the triangles on the side of (+eps, +eps^2): the lattice's last row and
    # column are left out, so the block covers exactly its area in pixels.
    covered = np.zeros((11, 14), dtype=bool)
    covered[:8, :11] = True
    assert np.array_equal(np.isfinite(depth), covered)
    np.testing.assert_allclose(depth[:8, :11], top_d[:8, :11], atol=1e-5)


@pytest.mark.parametrize("orientation", ["ras", "oblique"])
def test_rays_through_mesh_vertices_voxelize_without_stray_voxels(orientation: str) -> None:
    top_k = np.random.default_rng(8).uniform(1.2, 3.8, size=(9, 12))
    vertices_ijk, faces = _heightfield(top_k, 10.5)
    ijk_to_ras, _ = _grid(orientation, np.zeros(3), np.zeros(3))
    vertices_ras = vertices_ijk @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]
    mask = voxelize_mesh(vertices_ras, faces, ijk_to_ras, (14, 11, 13))  # rays along k, the longest axis
    k, j, i = np.meshgrid(np.arange(14), np.arange(11), np.arange(13), indexing="ij")
    expected = (i < 11) & (j < 8) & (k > top_k[np.minimum(j, 8), np.minimum(i, 11)]) & (k < 10.5)
    assert np.array_equal(mask, expected)


AGREEMENT_ORIENTATIONS = {
    "ras-axis-aligned": np.eye(3),
    "lps-feet-first-flipped": PATIENT_POSITIONS["FFS"] * np.array([-1.0, 1.0, 1.0]),
}


@pytest.mark.parametrize("orientation", AGREEMENT_ORIENTATIONS)
def test_render_matches_projection_of_the_voxelized_mesh(orientation: str) -> None:
    """As test_synthetic_render does for the analytic renderer: the projection reports the first voxel inside,
    the renderer the continuous surface, so they differ by -0.5 to +0.5 voxel, uniformly."""
    mesh, spacing_mm = _body_like(), 4.0
    low, high = mesh[0].min(axis=0), mesh[0].max(axis=0)
    ijk_to_ras, shape_kji = grid_covering(AGREEMENT_ORIENTATIONS[orientation], np.full(3, spacing_mm), low - 10.0,
                                          high + 10.0)
    labels = voxelize_mesh(*mesh, ijk_to_ras, shape_kji).astype(np.uint8)
    projected = project_volume(labels, ijk_to_ras, ProjectionConfig(threshold=0.5, table_removal_mm=0.0,
                                                                     surface_min_mm=5.0))
    rendered = render_mesh(*mesh, projected.pixel_to_ras, projected.shape)
    a, b = projected.silhouette, rendered.silhouette
    both = a & b
    diff = (projected.depth_mm[both] - rendered.depth_mm[both]) / spacing_mm
    assert both.sum() / (a | b).sum() > 0.99
    assert abs(np.median(diff)) < 0.15
    assert np.percentile(np.abs(diff), 95) < 0.55


@pytest.mark.parametrize("group_triangles", [2000, 1 << 17])
def test_batch_render_equals_single_renders(group_triangles: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mesh_module, "GROUP_TRIANGLES", group_triangles)  # groups of 1 mesh, or all 4 at once
    rng = np.random.default_rng(4)
    bodies = [_body_like(2, rng.uniform(0.8, 1.1), rng.normal(size=3) * 30) for _ in range(4)]
    grids = np.stack([view_pixel_to_ras(view, [400.0, -300.0, 1800.0] * np.array([1, 1 - 2 * (view == "lr"), 1]),
                                        (s, s)) for view, s in zip(["ap", "lr", "ap", "ap"], [10.0, 8.0, 7.0, 12.0],
                                                                   strict=True)])
    batch = render_mesh_batch(np.stack([v for v, _ in bodies]), bodies[0][1], grids, (240, 112))
    assert np.isfinite(batch).sum(axis=(1, 2)).min() > 1000
    for (vertices, faces), grid, depth in zip(bodies, grids, batch, strict=True):
        single = render_mesh(vertices, faces, grid, (240, 112))
        assert np.array_equal(np.isfinite(depth), single.silhouette)
        np.testing.assert_array_equal(depth[single.silhouette], single.depth_mm[single.silhouette])


def test_bad_inputs_raise_input_errors() -> None:
    vertices, faces = _sphere([0.0, 0.0, 0.0], 5.0, level=1)
    with pytest.raises(InputError, match="faces index"):
        voxelize_mesh(vertices, faces + 1000, np.eye(4), (10, 10, 10))
    with pytest.raises(InputError, match="unit vector"):
        render_mesh_batch(vertices[None], faces, np.diag([1.0, 1.0, 2.0, 1.0]), (10, 10))
    with pytest.raises(InputError, match="check that its units are mm"):
        voxelize_mesh(vertices * 1e6, faces, np.eye(4), (10, 10, 10))
    with pytest.raises(InputError, match="finite"):
        render_mesh_batch(vertices[None] * np.nan, faces, np.eye(4), (10, 10))


def test_front_faces_give_the_first_crossing_of_overlapping_and_hollow_meshes() -> None:
    """The renderer tests only faces turned to the ray; its depth is the first crossing of any face (the entry,
    where the winding number leaves 0) for overlapping components, reversed inner ones and mirrored grids."""
    body = _body_like(3)
    hollow = _join(_sphere([0.0, 0.0, 1250.0], 150.0), _sphere([20.0, 10.0, 1250.0], 80.0, level=2))
    hollow = (hollow[0], np.concatenate([hollow[1][:1280], hollow[1][1280:, ::-1]]))
    grids = np.stack([view_pixel_to_ras("ap", [600.0, -200.0, 1800.0], (9.0, 9.0)),
                      view_pixel_to_ras("lr", [-200.0, -600.0, 1800.0], (9.0, 9.0)) @ np.diag([-1.0, 1, 1, 1])])
    for vertices, faces in (body, hollow):
        for grid in grids:
            rendered = render_mesh_batch(vertices[None], faces, grid, (220, 140))[0]
            r2p = np.linalg.inv(grid)
            uvd = (r2p[:3, :3] @ vertices.T + r2p[:3, 3:])[None]
            first = np.full(220 * 140, np.inf, dtype=np.float32)
            for _, iu, iv, d, _ in mesh_module._crossings(uvd[:, 0], uvd[:, 1], uvd[:, 2], faces, (140, 220)):
                np.minimum.at(first, iv * 140 + iu, d.astype(np.float32))
            assert np.isfinite(rendered).sum() > 500
            np.testing.assert_array_equal(rendered, first.reshape(220, 140))
