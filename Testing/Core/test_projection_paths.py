"""The projection paths, exactly: the oblique grid (its bounding box, size and samplers), the aligned path's nearest
rays at a pixel size, its progress by slab, and the index helpers both paths read the volume with."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkDetectorLib.projection import VIEW_AXES_RAS, ProjectionConfig, _gather, _nearest, project_volume

from phantoms import make_ijk_to_ras, rotation, spheres_volume, voxel_centres_ras

SPACING = (1.1, 1.7, 2.6)  # i, j, k: anisotropic
SHAPE_KJI = (9, 15, 11)  # odd sizes, all different
OBLIQUE = [rotation((1, 1, 0), 25), rotation((0.3, -1, 0.5), 40)]


def oblique_box(direction, value=100.0):
    ijk_to_ras = make_ijk_to_ras(direction, SPACING, SHAPE_KJI, (3.0, -2.0, 1.5))
    return np.full(SHAPE_KJI, value, dtype=np.float32), ijk_to_ras


def centres_bounding_box(shape_kji, ijk_to_ras, view):
    """Lowest and highest voxel centre coordinates along the view's u, v and d axes."""
    along = voxel_centres_ras(shape_kji, ijk_to_ras).reshape(-1, 3) @ VIEW_AXES_RAS[view].T
    return along.min(axis=0), along.max(axis=0)


@pytest.mark.parametrize("view", ["ap", "lr"])
@pytest.mark.parametrize("index", range(len(OBLIQUE)))
@pytest.mark.parametrize("pixel", [None, 1.9])
def test_oblique_grid_starts_at_the_voxel_centres_bounding_box_and_ends_within_a_pixel_of_it(index, view, pixel):
    volume, ijk_to_ras = oblique_box(OBLIQUE[index])
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=0, table_removal_mm=0, view=view,
                                                                pixel_spacing_mm=pixel))
    low, high = centres_bounding_box(SHAPE_KJI, ijk_to_ras, view)
    step = pixel or min(SPACING)
    np.testing.assert_allclose(image.pixel_to_ras[:3, 3], low @ VIEW_AXES_RAS[view], atol=1e-9)
    h, w = image.shape
    for n, extent in ((w, high[0] - low[0]), (h, high[1] - low[1])):
        assert (n - 1) * step <= extent + 1e-9 < n * step, (n, extent, step)
    # The box (every voxel body) is seen.
    assert image.silhouette.any()


@pytest.mark.parametrize("view", ["ap", "lr"])
def test_oblique_pixel_size_dividing_the_extent_ends_on_the_last_voxel_centre(view):
    volume, ijk_to_ras = oblique_box(OBLIQUE[0])
    low, high = centres_bounding_box(SHAPE_KJI, ijk_to_ras, view)
    pixel = float(high[0] - low[0]) / 8  # the u extent is 8 pixels: 9 columns, the last on the farthest centre
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=0, table_removal_mm=0, view=view,
                                                                pixel_spacing_mm=pixel))
    assert image.shape[1] == 9


@pytest.mark.parametrize("view", ["ap", "lr"])
def test_oblique_samplers_nearest_for_model_pixels_trilinear_at_full_resolution(view):
    """Nearest voxels take only the voxels' two values, so any threshold between them gives the same image; trilinear
    samples take values in between, so a higher threshold gives a smaller silhouette."""
    ijk_to_ras = make_ijk_to_ras(OBLIQUE[1], SPACING, SHAPE_KJI, (0.0, 0.0, 0.0))
    volume = spheres_volume(SHAPE_KJI, ijk_to_ras, np.zeros(3), 9.0).astype(np.float32)  # -1000 or 40
    low_t, high_t = (ProjectionConfig(threshold=t, table_removal_mm=0, surface_min_mm=0, view=view,
                                      pixel_spacing_mm=1.3) for t in (-990.0, 30.0))
    nearest_low, nearest_high = (project_volume(volume, ijk_to_ras, c) for c in (low_t, high_t))
    np.testing.assert_array_equal(nearest_low.silhouette, nearest_high.silhouette)
    np.testing.assert_array_equal(nearest_low.depth_mm, nearest_high.depth_mm)
    low_t, high_t = (ProjectionConfig(threshold=t, table_removal_mm=0, surface_min_mm=0, view=view)
                     for t in (-990.0, 30.0))
    trilinear_low, trilinear_high = (project_volume(volume, ijk_to_ras, c) for c in (low_t, high_t))
    assert not (trilinear_high.silhouette & ~trilinear_low.silhouette).any()
    assert trilinear_low.silhouette.sum() > trilinear_high.silhouette.sum()


@pytest.mark.parametrize("pixel", [None, 2.0])
@pytest.mark.parametrize("direction", [OBLIQUE[0], np.eye(3)], ids=["oblique", "aligned"])
def test_voxels_equal_to_the_threshold_are_air(direction, pixel):
    volume, ijk_to_ras = oblique_box(direction)
    at = ProjectionConfig(threshold=100.0, table_removal_mm=0, surface_min_mm=0, pixel_spacing_mm=pixel)
    assert not project_volume(volume, ijk_to_ras, at).silhouette.any()
    below = ProjectionConfig(threshold=99.5, table_removal_mm=0, surface_min_mm=0, pixel_spacing_mm=pixel)
    assert project_volume(volume, ijk_to_ras, below).silhouette.any()


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0])], ids=["RAS", "LPS"])
def test_coarse_aligned_pixels_start_and_end_on_the_edge_voxels(direction):
    """5 x 5 voxels of 1 mm at 2 mm pixels: 3 x 3 pixels on voxels 0, 2 and 4, so a body only on the volume's edge
    rows and columns is a ring with an air centre, whichever way the axes run."""
    ijk_to_ras = make_ijk_to_ras(direction, (1.0, 1.0, 1.0), (5, 3, 5), (0.0, 0.0, 0.0))
    volume = np.zeros((5, 3, 5), dtype=np.int16)  # k (S), j (A), i (R)
    volume[[0, -1], :, :] = 100
    volume[:, :, [0, -1]] = 100
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=50, table_removal_mm=0, surface_min_mm=0,
                                                                pixel_spacing_mm=2.0))
    np.testing.assert_array_equal(image.silhouette, [[1, 1, 1], [1, 0, 1], [1, 1, 1]])
    np.testing.assert_allclose(image.depth_mm[image.silhouette], -0.5)  # half a voxel in front of the front row


def recorded_progress(volume, ijk_to_ras, view="ap"):
    calls = []
    project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=0, table_removal_mm=0, view=view),
                   progress=lambda fraction, message: calls.append((fraction, message)))
    return calls


@pytest.mark.parametrize("shape_kji, fractions", [
    ((4, 512, 512), [0.5, 1.0]),  # 2^18 voxels a slice: slabs of two slices (2^19 voxels)
    ((3, 520, 520), [1 / 3, 2 / 3, 1.0]),  # more than 2^18 voxels a slice: one slice a slab
    ((300_000, 1, 1), [1.0]),  # one-voxel rays: up to 2^19 of them in a slab
])
def test_aligned_projection_reports_progress_after_each_slab_of_about_512k_voxels(shape_kji, fractions):
    calls = recorded_progress(np.zeros(shape_kji, dtype=np.int16), np.eye(4))  # AP: rays along j, slabs along k
    assert [m for _, m in calls] == ["Projecting volume"] * len(fractions)
    np.testing.assert_allclose([f for f, _ in calls], fractions)


def test_aligned_slabs_run_along_the_slowest_axis_that_is_not_the_ray():
    """Rays along k (array axis 0): slabs are taken along j (axis 1), 4 j-slices of 200 x 600 voxels each."""
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = [[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]  # i -> R, j -> S, k -> A
    calls = recorded_progress(np.zeros((200, 5, 600), dtype=np.int16), ijk_to_ras)
    np.testing.assert_allclose([f for f, _ in calls], [0.8, 1.0])


@pytest.mark.parametrize("indices", [[3], [0], [6], [0, 3], [1, 2, 3], [2, 4, 6], [4, 2], [6, 4, 2], [4, 2, 0],
                                     [6, 5, 4, 3, 2, 1, 0], [5, 3, 1], [2, 5, 6], [6, 0, 1]])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_equals_take_along_any_axis(indices, axis):
    array = np.arange(7 * 7 * 7).reshape(7, 7, 7)
    np.testing.assert_array_equal(_gather(array, np.array(indices, dtype=np.intp), axis),
                                  np.take(array, indices, axis=axis))


def test_nearest_far_outside_the_volume_is_minus_infinity_and_the_span_is_inclusive():
    volume = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)  # k, j, i
    far = [np.float32([-50.0, 0.0, 0.0, 80.0]), np.float32([0.0, -50.0, 0.0, 80.0]),
           np.float32([0.0, 0.0, -50.0, 80.0])]
    assert np.all(_nearest(volume.reshape(-1), volume.shape, far) == -np.inf)
    # Within 1e-4 voxel of the first and last voxel centres counts as inside, the limits included.
    edge = [np.float32([-1e-4, 6 + 1e-4]), np.float32([-1e-4, 5 + 1e-4]), np.float32([-1e-4, 4 + 1e-4])]
    np.testing.assert_array_equal(_nearest(volume.reshape(-1), volume.shape, edge), [volume[0, 0, 0], volume[4, 5, 6]])
