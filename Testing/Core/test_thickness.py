"""Joint centres at a fraction of the body's thickness along the viewing ray (thickness.py), and detection with a
model that lists depth fractions: every orientation, anisotropic spacing, odd sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from LandmarkDetectorLib.pipeline import detect_landmarks
from LandmarkDetectorLib.thickness import at_depth_fractions, body_runs_along_ray, fraction_in_run, nearest_run

from phantoms import (
    AIR_HU,
    ALIGNED_DIRECTIONS,
    ANISOTROPIC_SPACING_MM,
    OBLIQUE_DIRECTIONS,
    ODD_SHAPE_KJI,
    TISSUE_HU,
    make_ijk_to_ras,
    rotation,
    spheres_volume,
    voxel_centres_ras,
)

ANTERIOR = np.array([0.0, 1.0, 0.0])
POSTERIOR = -ANTERIOR  # the AP view's ray
DIRECTIONS = ALIGNED_DIRECTIONS + OBLIQUE_DIRECTIONS
SPACING, SHAPE = ANISOTROPIC_SPACING_MM, ODD_SHAPE_KJI


def slabs_volume(ijk_to_ras, shape, slabs_a_mm, value=TISSUE_HU):
    """Air with tissue wherever a voxel centre's A lies in one of the (low, high) slabs."""
    a = voxel_centres_ras(shape, ijk_to_ras)[..., 1]
    volume = np.full(shape, AIR_HU, dtype=np.float32)
    for low, high in slabs_a_mm:
        volume[(a >= low) & (a <= high)] = value
    return volume


@pytest.mark.parametrize("index", range(4))
def test_stretches_along_a_voxel_axis_are_exact_to_an_eighth_of_a_voxel(index):
    ijk_to_ras = make_ijk_to_ras(DIRECTIONS[index], SPACING, SHAPE, (3.0, -2.0, 5.0))
    volume = slabs_volume(ijk_to_ras, SHAPE, [(-20.0, -12.0), (0.0, 15.0)])
    a_spacing = abs(ijk_to_ras[1, :3]).max()
    # The voxelized slabs end half a voxel beyond their outermost voxel centres.
    a = np.unique(np.round(voxel_centres_ras(SHAPE, ijk_to_ras)[..., 1], 6))
    inside = [a[(a >= low) & (a <= high)] for low, high in [(0.0, 15.0), (-20.0, -12.0)]]
    point = np.array([3.0, 4.0, 5.0])
    runs = body_runs_along_ray(volume, ijk_to_ras, point, POSTERIOR * 7.0, 0.0, 5.0)
    # Along the posterior ray from A = 4: first the slab 0..15 (entered at its front, 15), then -12..-20.
    expected = [[4.0 - (s.max() + a_spacing / 2), 4.0 - (s.min() - a_spacing / 2)] for s in inside]
    np.testing.assert_allclose(runs, expected, atol=min(SPACING) / 8 + 1e-9)


@pytest.mark.parametrize("index", range(len(DIRECTIONS)))
def test_a_sphere_is_crossed_where_its_surface_is_in_every_orientation(index):
    ijk_to_ras = make_ijk_to_ras(DIRECTIONS[index], SPACING, SHAPE, (3.0, -2.0, 5.0))
    centre = np.array([4.0, -3.0, 6.0])
    volume = spheres_volume(SHAPE, ijk_to_ras, centre, 20.0)
    for ray in (POSTERIOR, ANTERIOR, np.array([1.0, 0.0, 0.0]), np.array([0.3, -1.0, 0.2])):
        start = centre - 35.0 * ray / np.linalg.norm(ray)
        runs = body_runs_along_ray(volume, ijk_to_ras, start, ray, 0.0, 5.0)
        assert runs.shape == (1, 2)
        # A voxelized surface lies within half a voxel diagonal of the true one.
        np.testing.assert_allclose(runs[0], [15.0, 55.0], atol=np.linalg.norm(SPACING) / 2)


def test_thin_layers_and_nan_voxels_are_not_body_and_a_line_missing_the_volume_crosses_nothing():
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (1.0, 1.0, 1.0), (21, 31, 25), (0.0, 0.0, 0.0))
    volume = slabs_volume(ijk_to_ras, (21, 31, 25), [(-12.0, -9.0), (-5.0, 10.0)])  # a 4 mm plate, a 16 mm body
    runs = body_runs_along_ray(volume, ijk_to_ras, np.zeros(3), POSTERIOR, 0.0, 5.0)
    np.testing.assert_allclose(runs, [[-10.5, 5.5]], atol=0.125)
    np.testing.assert_allclose(body_runs_along_ray(volume, ijk_to_ras, np.zeros(3), POSTERIOR, 0.0, 3.9),
                               [[-10.5, 5.5], [8.5, 12.5]], atol=0.125)
    outside = np.array([40.0, 0.0, 0.0])  # right of the volume, the ray parallel to its side
    assert body_runs_along_ray(volume, ijk_to_ras, outside, POSTERIOR, 0.0, 0.0).shape == (0, 2)
    assert body_runs_along_ray(volume, ijk_to_ras, outside, ANTERIOR + 2 * POSTERIOR, 0.0, 0.0).shape == (0, 2)
    assert body_runs_along_ray(volume, ijk_to_ras, outside, [1.0, -1.0, 0.3], 0.0, 0.0).shape == (0, 2)  # passes by
    assert body_runs_along_ray(volume, ijk_to_ras, np.zeros(3), POSTERIOR, float(TISSUE_HU), 0.0).shape == (0, 2)
    volume[volume > 0] = np.nan
    assert body_runs_along_ray(volume, ijk_to_ras, np.zeros(3), POSTERIOR, 0.0, 0.0).shape == (0, 2)


def test_the_stretch_holding_the_point_or_else_the_nearest_one_is_used():
    runs = np.array([[-30.0, -20.0], [-4.0, 6.0], [9.0, 19.0]])
    assert nearest_run(runs) == (-4.0, 6.0)
    assert fraction_in_run(runs) == pytest.approx(0.4)
    assert nearest_run(runs[[0, 2]]) == (9.0, 19.0)  # 9 mm behind beats 20 mm in front
    assert fraction_in_run(runs[[0, 2]]) == pytest.approx(-0.9)
    assert nearest_run(runs[:1]) == (-30.0, -20.0)
    assert fraction_in_run(runs[:1]) == pytest.approx(3.0)
    assert nearest_run(np.array([[-50.0, 10.0], [15.0, 20.0]])) == (-50.0, 10.0)  # holds it, though entered far off
    assert nearest_run(np.array([[-20.0, -5.0], [-2.0, 30.0]])) == (-2.0, 30.0)  # holds it, though it leaves far off
    assert nearest_run(np.array([[-10.0, -0.4], [0.5, 10.0]])) == (-10.0, -0.4)  # 0.4 mm behind beats 0.5 mm ahead
    assert nearest_run(np.zeros((0, 2))) is None and np.isnan(fraction_in_run(np.zeros((0, 2))))


@pytest.mark.parametrize("ray", [POSTERIOR, ANTERIOR])
def test_body_in_the_first_and_last_voxel_layers_along_the_ray_ends_at_the_volumes_edge(ray):
    """One-voxel layers of body at both ends of a voxel axis along A, air between: the stretches end at the volume's
    extent (the outer faces of those voxels), to half a sampling step (an eighth of the smallest voxel)."""
    shape, spacing = (9, 12, 7), (1.5, 2.0, 1.0)  # A runs along j, 2 mm voxels
    ijk_to_ras = make_ijk_to_ras(np.eye(3), spacing, shape, (0.0, 0.0, 0.0))
    volume = np.full(shape, AIR_HU, dtype=np.int16)
    volume[:, [0, -1], :] = TISSUE_HU
    point = np.zeros(3)  # the extent along A: -12 .. 12 mm
    runs = body_runs_along_ray(volume, ijk_to_ras, point, ray, 0.0, 0.0)
    expected = np.array([[-12.0, -10.0], [10.0, 12.0]])
    np.testing.assert_allclose(runs, expected if ray[1] > 0 else -expected[::-1, ::-1], atol=0.25 / 2 + 1e-9)


def test_a_ray_along_the_outermost_voxel_layer_sees_it_and_one_just_beyond_it_sees_nothing():
    shape = (9, 12, 7)
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (1.0, 1.0, 1.0), shape, (0.0, 0.0, 0.0))  # R extent -3.5 .. 3.5 mm
    volume = np.full(shape, TISSUE_HU, dtype=np.int16)
    for r, crossed in ((-3.0, 1), (3.0, 1), (-3.9, 0), (3.9, 0)):
        runs = body_runs_along_ray(volume, ijk_to_ras, np.array([r, 0.0, 0.0]), POSTERIOR, 0.0, 0.0)
        assert len(runs) == crossed, r


def test_only_listed_landmarks_move_and_only_along_the_ray():
    ijk_to_ras = make_ijk_to_ras(rotation((1, 2, 0.5), 30), SPACING, SHAPE, (0.0, 0.0, 0.0))
    volume = slabs_volume(ijk_to_ras, SHAPE, [(-10.0, 14.0)])
    points = np.array([[1.0, 30.0, 2.0], [2.0, -3.0, 1.0], [-1.0, 0.0, 3.0]])
    moved = at_depth_fractions(points, ["A", "B", "C"], {"A": 0.25, "C": 1.0}, volume, ijk_to_ras, POSTERIOR * 3,
                               0.0, 5.0)
    # A (in air in front of the slab) goes to a quarter of the way in, C to where the ray leaves; B stays.
    np.testing.assert_allclose(moved[:, [0, 2]], points[:, [0, 2]])
    np.testing.assert_allclose(moved[:, 1], [14.0 - 0.25 * 24.0, -3.0, -10.0], atol=1.5)
    whole_mm = at_depth_fractions([[1, 30, 2]], ["A"], {"A": 0.25}, volume, ijk_to_ras, [0, -3, 0], 0.0, 5.0)
    np.testing.assert_allclose(whole_mm, moved[:1])  # integer input gives the same float answer
    unchanged = at_depth_fractions(points, ["A", "B", "C"], {"A": 0.5}, np.full(SHAPE, AIR_HU), ijk_to_ras,
                                   POSTERIOR, 0.0, 5.0)
    np.testing.assert_array_equal(unchanged, points)


@pytest.mark.parametrize("index", range(len(DIRECTIONS)))
@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_detection_places_a_listed_landmark_at_its_fraction_of_the_sphere_in_every_orientation(centroid_model, index,
                                                                                               fraction):
    ijk_to_ras = make_ijk_to_ras(DIRECTIONS[index], SPACING, SHAPE, (10.0, -5.0, 18.0))
    centre, radius = np.array([12.0, -7.0, 20.0]), 18.0  # inside the volume in every orientation
    volume = spheres_volume(SHAPE, ijk_to_ras, centre, radius)
    model = dataclasses.replace(centroid_model, metadata=dataclasses.replace(
        centroid_model.metadata, depth_fractions={"Centroid": fraction}))
    result = detect_landmarks(volume, ijk_to_ras, model)
    # The centroid's ray passes through the sphere's centre: it enters at A = centre + r and leaves at centre - r.
    expected = centre + np.array([0.0, radius * (1 - 2 * fraction), 0.0])
    np.testing.assert_allclose(result.points_ras[0], expected, atol=1.0)
    assert result.found.tolist() == [True]
