"""Skin landmarks at the body's extreme near the network's point, or moved from the air onto the skin (surface.py), and
detection with a model that lists them: flipped, permuted and oblique orientations, anisotropic spacing, odd sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from analytic_model import save_side_guess_model

from LandmarkDetectorLib.model import load_model
from LandmarkDetectorLib.pipeline import detect_landmarks
from LandmarkDetectorLib.projection import ProjectionConfig
from LandmarkDetectorLib.surface import (
    ONTO_SKIN_SEARCH_MM,
    SEARCH_AHEAD_MM,
    SEARCH_DEPTH_MM,
    SEARCH_HALF_WIDTH_MM,
    SLAB_HALF_DEPTH_MM,
    at_skin,
    at_surface_extremes,
    extremes_disagreement,
    onto_skin,
    surface_extreme,
)

from phantoms import (
    AIR_HU,
    ALIGNED_DIRECTIONS,
    ANISOTROPIC_SPACING_MM,
    OBLIQUE_DIRECTIONS,
    ODD_SHAPE_KJI,
    TISSUE_HU,
    make_ijk_to_ras,
    spheres_volume,
    voxel_centres_ras,
)

ALIGNED, OBLIQUE = ALIGNED_DIRECTIONS, OBLIQUE_DIRECTIONS
SPACING, SHAPE = ANISOTROPIC_SPACING_MM, ODD_SHAPE_KJI
SUPERIOR, ANTERIOR, RIGHT = np.eye(3)[[2, 1, 0]]
TOE = np.array([0.0, np.cos(np.radians(20.0)), -np.sin(np.radians(20.0))])
PLAIN = ProjectionConfig(threshold=0.0, table_removal_mm=0.0, surface_min_mm=0.0)
CENTRE, RADIUS = np.array([4.0, -3.0, 6.0]), 20.0
NETWORK_ERROR = np.array([6.0, 15.0, -8.0])  # where the network's point lies from the true extreme


def sphere(direction_ras, spacing=SPACING, shape=SHAPE):
    ijk_to_ras = make_ijk_to_ras(direction_ras, spacing, shape, (3.0, -2.0, 5.0))
    return spheres_volume(shape, ijk_to_ras, CENTRE, RADIUS), ijk_to_ras


@pytest.mark.parametrize("index", range(len(ALIGNED)))
@pytest.mark.parametrize("direction", [SUPERIOR, ANTERIOR, TOE, RIGHT], ids=["S", "A", "toe", "R"])
def test_the_extreme_of_a_sphere_is_found_to_half_a_voxel_in_aligned_volumes(index, direction):
    volume, ijk_to_ras = sphere(ALIGNED[index])
    extreme = CENTRE + RADIUS * direction
    found = surface_extreme(volume, ijk_to_ras, extreme + NETWORK_ERROR, direction, PLAIN, 0.0)
    assert abs((found - extreme) @ direction) <= max(SPACING) / 2
    assert np.linalg.norm(found - extreme) <= max(SPACING)


@pytest.mark.parametrize("index", range(len(OBLIQUE)))
@pytest.mark.parametrize("direction", [SUPERIOR, ANTERIOR, TOE, RIGHT], ids=["S", "A", "toe", "R"])
def test_the_extreme_of_a_sphere_is_found_in_oblique_volumes(index, direction):
    volume, ijk_to_ras = sphere(OBLIQUE[index])
    extreme = CENTRE + RADIUS * direction
    found = surface_extreme(volume, ijk_to_ras, extreme + NETWORK_ERROR, direction, PLAIN, 0.0)
    # Along the direction the surface is placed to half a voxel's diagonal; across it, the extreme of a round
    # voxelized surface is only defined to about sqrt(2 r d) for a roughness d of half that diagonal.
    half_diagonal = np.linalg.norm(SPACING) / 2
    assert abs((found - extreme) @ direction) <= half_diagonal
    assert np.linalg.norm(found - extreme) <= np.sqrt(2 * RADIUS * half_diagonal)


def test_the_window_leaves_out_bodies_beside_or_far_in_front_of_or_behind_the_point():
    shape, radius = (61, 151, 75), 15.0
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (1.5, 1.5, 1.5), shape, (0.0, 0.0, 0.0))
    head = np.array([0.0, 0.0, 0.0])
    clear = radius + 5.0  # another sphere of this radius this much beyond the window does not reach into it
    # In the image plane (S): the window reaches SEARCH_HALF_WIDTH_MM to the side, SLAB_HALF_DEPTH_MM along the ray.
    # Facing the viewer (A, in the AP view): SEARCH_DEPTH_MM along the ray.
    for direction, other, taken in [
            (SUPERIOR, head + [SEARCH_HALF_WIDTH_MM + clear, 0.0, 10.0], False),  # beside the window
            (SUPERIOR, head + [0.0, -(SLAB_HALF_DEPTH_MM + clear), 10.0], False),  # an arm over the head, behind it
            (SUPERIOR, head + [SEARCH_HALF_WIDTH_MM - 12.0, 0.0, 10.0], True),  # within the window: taken
            (ANTERIOR, head + [0.0, radius + SEARCH_DEPTH_MM + clear, 10.0], False),  # far in front of the point
            (ANTERIOR, head + [0.0, SEARCH_DEPTH_MM - 10.0, 10.0], True),  # its front within reach: taken
            # Straight at the viewer the window is a square, SEARCH_HALF_WIDTH_MM every way in the image plane.
            (ANTERIOR, head + [0.0, 10.0, SEARCH_HALF_WIDTH_MM + 17.0], False)]:
        top = head + radius * direction
        volume = spheres_volume(shape, ijk_to_ras, np.array([head, other]), radius)
        found = surface_extreme(volume, ijk_to_ras, top - 5.0 * direction, direction, PLAIN, 0.0)
        expected = other + radius * direction if taken else top
        np.testing.assert_allclose(found @ direction, expected @ direction, atol=1.0)
        if direction is SUPERIOR:
            np.testing.assert_allclose(found, expected, atol=1.0)


@pytest.mark.parametrize("side", [-1.0, 1.0], ids=["behind", "in front"])
def test_in_the_image_plane_the_depth_stays_near_the_networks(side):
    # A long body along the ray (an arm lying against the back of the head): the middle of its stretch lies 60 mm
    # behind (or in front of) the network's point; the landmark stays within the slab the window searched.
    shape = (41, 121, 45)
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (1.5, 1.5, 1.5), shape, (0.0, side * 55.0, 0.0))
    chain = np.array([[0.0, side * a, 0.0] for a in np.arange(0.0, 121.0, 3.0)])
    volume = spheres_volume(shape, ijk_to_ras, chain, 15.0)
    point = np.array([0.0, 0.0, 10.0])
    found = surface_extreme(volume, ijk_to_ras, point, SUPERIOR, PLAIN, 0.0)
    np.testing.assert_allclose(found, [0.0, side * SLAB_HALF_DEPTH_MM, 15.0], atol=1.0)


def test_a_point_out_in_the_air_finds_the_surface_behind_it():
    volume, ijk_to_ras = sphere(np.eye(3), shape=(61, 47, 37))
    extreme = CENTRE + RADIUS * SUPERIOR
    found = surface_extreme(volume, ijk_to_ras, extreme + [0.0, 0.0, 30.0], SUPERIOR, PLAIN, 0.0)
    np.testing.assert_allclose(found, extreme, atol=max(SPACING))


def test_a_direction_tilted_towards_the_viewer_is_taken_in_the_image_plane():
    # 29 degrees out of the image plane (short of FACING_COSINE's 60): the silhouette's top, at mid-depth, not the
    # sphere's extreme along the tilted direction (3-4 mm from it here).
    volume, ijk_to_ras = sphere(np.eye(3))
    tilted = np.array([0.0, 0.55, 1.0])
    assert np.degrees(np.arcsin(0.55 / np.linalg.norm(tilted))) > 28.0
    found = surface_extreme(volume, ijk_to_ras, CENTRE + RADIUS * SUPERIOR + NETWORK_ERROR, tilted, PLAIN, 0.0)
    np.testing.assert_allclose(found, CENTRE + RADIUS * SUPERIOR, atol=1.0)


def test_the_body_is_told_from_air_at_the_threshold_detection_used():
    volume, ijk_to_ras = sphere(np.eye(3))
    extreme = CENTRE + RADIUS * SUPERIOR
    above_everything = dataclasses.replace(PLAIN, threshold=float(TISSUE_HU) + 1.0)  # the model's own setting
    found = surface_extreme(volume, ijk_to_ras, extreme + NETWORK_ERROR, SUPERIOR, above_everything, 0.0)
    np.testing.assert_allclose(found, extreme, atol=max(SPACING))
    # An MR-like head with a faint outer layer (fat) that detection's threshold counted as body, and an automatic
    # (Otsu) threshold would not: the extreme is the layer's.
    inner = spheres_volume(SHAPE, ijk_to_ras, CENTRE, RADIUS - 6.0) > 0
    mr = np.where(inner, 100.0, np.where(volume > 0, 30.0, 0.0))
    automatic = dataclasses.replace(PLAIN, threshold=None)
    found = surface_extreme(mr, ijk_to_ras, extreme + NETWORK_ERROR, SUPERIOR, automatic, 10.0)
    np.testing.assert_allclose(found, extreme, atol=max(SPACING))


@pytest.mark.parametrize("superior_sign", [1.0, -1.0], ids=["vertex-last-slice", "vertex-first-slice"])
def test_a_head_cut_by_the_field_of_view_ends_half_a_voxel_beyond_the_edge_slice(superior_sign):
    # The scan ends inside the head: its extreme is the edge slice's outer boundary, whichever end of the index range
    # that slice is.
    spacing, shape = (1.5, 1.5, 2.0), (21, 41, 41)
    ijk_to_ras = make_ijk_to_ras(np.diag([1.0, 1.0, superior_sign]), spacing, shape, (0.0, 0.0, 0.0))
    volume = spheres_volume(shape, ijk_to_ras, np.array([0.0, 0.0, 0.0]), 25.0)  # reaches past the 40 mm slab
    edge_s = (shape[0] - 1) / 2 * spacing[2]
    found = surface_extreme(volume, ijk_to_ras, [0.0, 0.0, edge_s - 5.0], SUPERIOR, PLAIN, 0.0)
    np.testing.assert_allclose(found, [0.0, 0.0, edge_s + spacing[2] / 2], atol=0.5)


def test_the_window_is_a_rectangle_along_the_direction_even_when_that_is_diagonal_in_the_image():
    shape = (55, 27, 61)
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (1.5, 1.5, 1.5), shape, (12.0, 0.0, 10.0))
    e, side = np.array([1.0, 0.0, 1.0]) / np.sqrt(2), np.array([1.0, 0.0, -1.0]) / np.sqrt(2)
    extreme = 15.0 * e  # of a sphere of 15 mm at the origin
    point = extreme + 3.0 * side
    # Small spheres farther along the direction, inside the window's bounding box but 2 mm beyond its reach ahead or
    # to the side.
    small = 4.0
    beyond_ahead = point + (SEARCH_AHEAD_MM + small + 2.0) * e
    beyond_side = point + 5.0 * e + (SEARCH_HALF_WIDTH_MM + small + 2.0) * side
    body = spheres_volume(shape, ijk_to_ras, np.zeros(3), 15.0)
    for centre in (beyond_ahead, beyond_side):
        other = spheres_volume(shape, ijk_to_ras, centre[None, :], small)
        assert other.max() > 0.0  # inside the volume
        body = np.maximum(body, other)
    found = surface_extreme(body, ijk_to_ras, point, e, PLAIN, 0.0)
    np.testing.assert_allclose(found, extreme, atol=1.5)
    # The window's own pixels are the volume's, whatever pixel size the projection settings name.
    np.testing.assert_array_equal(surface_extreme(body, ijk_to_ras, point, e,
                                                  dataclasses.replace(PLAIN, pixel_spacing_mm=10.0), 0.0), found)


def test_a_thin_plate_is_not_taken_for_the_body_when_the_projection_removes_tables():
    shape = (61, 41, 45)
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (1.5, 1.5, 1.5), shape, (0.0, 0.0, 0.0))
    volume = spheres_volume(shape, ijk_to_ras, np.zeros(3), 15.0)
    a = voxel_centres_ras(shape, ijk_to_ras)[..., 1]
    volume[(a > -25.0) & (a < -20.0)] = TISSUE_HU  # a plate behind the sphere, higher than it
    top = np.array([0.0, 0.0, 15.0])
    with_table_removal = dataclasses.replace(PLAIN, table_removal_mm=15.0)
    np.testing.assert_allclose(surface_extreme(volume, ijk_to_ras, top, SUPERIOR, with_table_removal, 0.0), top,
                               atol=1.0)
    assert surface_extreme(volume, ijk_to_ras, top, SUPERIOR, PLAIN, 0.0)[2] > 30.0  # the plate's top


def test_no_body_in_the_window_or_a_direction_away_from_the_viewer_leaves_the_point():
    volume, ijk_to_ras = sphere(np.eye(3))
    assert surface_extreme(np.full(SHAPE, AIR_HU), ijk_to_ras, CENTRE, SUPERIOR, PLAIN, 0.0) is None
    far = CENTRE + [80.0, 0.0, 0.0]  # beside the sphere, the window misses it
    assert surface_extreme(volume, ijk_to_ras, far, SUPERIOR, PLAIN, 0.0) is None
    assert surface_extreme(volume, ijk_to_ras, far + [500.0, 0.0, 0.0], SUPERIOR, PLAIN, 0.0) is None  # off the volume
    assert surface_extreme(volume, ijk_to_ras, CENTRE - 500.0, SUPERIOR, PLAIN, 0.0) is None  # before its first voxels
    assert surface_extreme(volume, ijk_to_ras, CENTRE, -ANTERIOR, PLAIN, 0.0) is None  # the AP view's far side
    points = np.array([CENTRE, CENTRE, far])
    moved = at_surface_extremes(points, ["A", "B", "C"], {"A": SUPERIOR, "C": SUPERIOR}, volume, ijk_to_ras, PLAIN,
                                0.0)
    np.testing.assert_allclose(moved[0], CENTRE + RADIUS * SUPERIOR, atol=1.0)
    np.testing.assert_array_equal(moved[1:], points[1:])
    # Points given as whole millimetres are moved to fractional ones, not rounded.
    whole = at_surface_extremes([[4, -3, 6]], ["A"], {"A": SUPERIOR}, volume, ijk_to_ras, PLAIN, 0.0)
    np.testing.assert_allclose(whole[0], moved[0], atol=1e-9)


@pytest.mark.parametrize("index", range(len(ALIGNED + OBLIQUE)))
def test_detection_places_a_listed_landmark_at_the_top_of_the_sphere_in_every_orientation(centroid_model, index):
    volume, ijk_to_ras = sphere((ALIGNED + OBLIQUE)[index])
    model = dataclasses.replace(centroid_model, metadata=dataclasses.replace(
        centroid_model.metadata, surface_extremes={"Centroid": (0.0, 0.0, 1.0)}))
    result = detect_landmarks(volume, ijk_to_ras, model)
    # The centroid lies at the sphere's centre, the radius (20 mm) within the window's reach ahead of it.
    half_diagonal = np.linalg.norm(SPACING) / 2
    assert abs(result.points_ras[0, 2] - (CENTRE[2] + RADIUS)) <= half_diagonal
    assert np.linalg.norm(result.points_ras[0] - (CENTRE + RADIUS * SUPERIOR)) <= np.sqrt(2 * RADIUS * half_diagonal)
    assert result.found.tolist() == [True]


def test_the_disagreement_of_a_listed_landmark_is_that_of_the_two_views_extremes():
    volume, ijk_to_ras = sphere(OBLIQUE[0])
    top = CENTRE + RADIUS * SUPERIOR
    # Both views near the top, 20 mm apart: their extremes are the same point. "B" is not listed and keeps its value.
    views = [np.array([top + NETWORK_ERROR, top]), np.array([top + NETWORK_ERROR * [-1, 1, 1], top])]
    raw = np.array([20.0, 7.0])
    disagreement = extremes_disagreement(views, raw, ["A", "B"], {"A": SUPERIOR}, volume, ijk_to_ras, PLAIN, 0.0)
    assert disagreement[0] < np.linalg.norm(SPACING) / 2 and disagreement[1] == 7.0
    # One view with no body near it: infinite. One view (no mirror check): the disagreements as they are.
    astray = [views[0], views[1] + [80.0, 0.0, 0.0]]
    assert np.isinf(extremes_disagreement(astray, raw, ["A", "B"], {"A": SUPERIOR}, volume, ijk_to_ras, PLAIN, 0.0)[0])
    nan = np.full(2, np.nan)
    assert np.isnan(extremes_disagreement(views[:1], nan, ["A", "B"], {"A": SUPERIOR}, volume, ijk_to_ras, PLAIN,
                                          0.0)).all()


@pytest.mark.parametrize("index", [0, len(ALIGNED) - 1, len(ALIGNED)])
def test_detection_reports_found_a_pair_whose_two_views_reach_the_same_extreme(tmp_path, index):
    # The side-guess pair lies 15 mm right of the sphere's centre on the canvas and 15 mm left of it on its mirror:
    # 30 mm apart, beyond the 5 mm tolerance. Both views' windows hold the sphere's top, where both are placed.
    volume, ijk_to_ras = sphere((ALIGNED + OBLIQUE)[index])
    save_side_guess_model(tmp_path / "pair.pt", tolerance_mm=5.0)
    model = load_model(tmp_path / "pair.pt")
    assert detect_landmarks(volume, ijk_to_ras, model).found.tolist() == [False, False]
    listed = dataclasses.replace(model, metadata=dataclasses.replace(
        model.metadata, surface_extremes={"PointR": (0.0, 0.0, 1.0), "PointL": (0.0, 0.0, 1.0)}))
    result = detect_landmarks(volume, ijk_to_ras, listed)
    assert result.found.tolist() == [True, True]
    assert np.all(result.disagreement_mm < np.linalg.norm(SPACING) / 2)
    np.testing.assert_allclose(result.points_ras[:, 2], CENTRE[2] + RADIUS, atol=np.linalg.norm(SPACING) / 2)


OUTWARD = [SUPERIOR, ANTERIOR, -RIGHT, np.array([1.0, -2.0, 2.0]) / 3.0]


@pytest.mark.parametrize("index", range(len(ALIGNED + OBLIQUE)))
@pytest.mark.parametrize("gap_mm", [2.0, 7.0])
def test_a_point_in_the_air_is_moved_onto_the_nearest_skin_in_every_orientation(index, gap_mm):
    volume, ijk_to_ras = sphere((ALIGNED + OBLIQUE)[index])
    half_diagonal = np.linalg.norm(SPACING) / 2
    for outward in OUTWARD:
        skin = CENTRE + RADIUS * outward
        moved = onto_skin(volume, ijk_to_ras, skin + gap_mm * outward, 0.0)
        # On the voxelized surface (half a voxel beyond the last body voxel), at the nearest skin point.
        assert abs(np.linalg.norm(moved - CENTRE) - RADIUS) <= half_diagonal
        assert np.linalg.norm(moved - skin) <= np.sqrt(2 * RADIUS * half_diagonal)


def test_points_in_the_body_far_from_it_or_with_no_body_near_stay_where_they_are():
    volume, ijk_to_ras = sphere(OBLIQUE[0])
    assert onto_skin(volume, ijk_to_ras, CENTRE + [0.0, 0.0, RADIUS - 2.0], 0.0) is None  # in the body
    assert onto_skin(volume, ijk_to_ras, CENTRE, 0.0) is None
    beyond = RADIUS + ONTO_SKIN_SEARCH_MM + 1.0  # the nearest body farther than the search distance
    assert onto_skin(volume, ijk_to_ras, CENTRE + [0.0, 0.0, beyond], 0.0) is None
    assert onto_skin(np.full(SHAPE, AIR_HU), ijk_to_ras, CENTRE + [0.0, 0.0, RADIUS + 3.0], 0.0) is None
    assert onto_skin(volume, ijk_to_ras, CENTRE + 500.0, 0.0) is None  # off the volume
    # Just inside the search distance (its nearest voxel centre lies half a voxel inside the surface) it moves.
    assert onto_skin(volume, ijk_to_ras, CENTRE + [0.0, 0.0, RADIUS + ONTO_SKIN_SEARCH_MM - 2.0], 0.0) is not None
    # A threshold above the tissue leaves no body at all.
    assert onto_skin(volume, ijk_to_ras, CENTRE + [0.0, 0.0, RADIUS + 3.0], TISSUE_HU + 1.0) is None


def test_a_point_in_the_air_touching_a_voxel_diagonally_stays_put():
    # One body voxel (1 mm cube at the origin); the point lies in the next voxel, closer to the cube's centre than
    # half the cube's extent along the line between them: the surface is not put beyond the point.
    volume = np.full((5, 5, 5), AIR_HU, dtype=np.int16)
    volume[2, 2, 2] = TISSUE_HU
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (1.0, 1.0, 1.0), (5, 5, 5), (0.0, 0.0, 0.0))
    point = np.array([0.52, 0.3, 0.0])
    np.testing.assert_allclose(onto_skin(volume, ijk_to_ras, point, 0.0), point, atol=1e-9)
    # Straight out along an axis, the surface is half a voxel from the centre: half that axis's spacing.
    np.testing.assert_allclose(onto_skin(volume, ijk_to_ras, [0.0, 0.0, 1.6], 0.0), [0.0, 0.0, 0.5], atol=1e-9)
    ijk_to_ras = make_ijk_to_ras(np.eye(3), SPACING, (5, 5, 5), (0.0, 0.0, 0.0))
    np.testing.assert_allclose(onto_skin(volume, ijk_to_ras, [0.0, 0.0, 2.5], 0.0), [0.0, 0.0, SPACING[2] / 2],
                               atol=1e-9)


def test_only_the_listed_landmarks_are_moved_onto_the_skin():
    volume, ijk_to_ras = sphere(np.eye(3))
    outside = CENTRE + (RADIUS + 4.0) * SUPERIOR
    points = np.array([outside, outside, CENTRE])
    moved = at_skin(points, ["A", "B", "C"], ("A", "C"), volume, ijk_to_ras, 0.0)
    assert abs(np.linalg.norm(moved[0] - CENTRE) - RADIUS) <= np.linalg.norm(SPACING) / 2
    np.testing.assert_array_equal(moved[1:], points[1:])


TWO_SHAPE_KJI = (61, 63, 59)
TWO_RADIUS = 14.0
TWO_CENTRES = np.array([[-19.0, 0.0, 0.0], [19.0, 0.0, 0.0]]) + CENTRE


@pytest.mark.parametrize("index", range(len(ALIGNED + OBLIQUE)))
def test_detection_moves_a_listed_landmark_from_between_two_spheres_onto_one_of_them(centroid_model, index):
    ijk_to_ras = make_ijk_to_ras((ALIGNED + OBLIQUE)[index], SPACING, TWO_SHAPE_KJI, CENTRE)
    volume = spheres_volume(TWO_SHAPE_KJI, ijk_to_ras, TWO_CENTRES, TWO_RADIUS)
    # The centroid of two spheres lies in the air between them, 5 mm from each in R and a little in front.
    plain = detect_landmarks(volume, ijk_to_ras, centroid_model)
    assert np.min(np.linalg.norm(TWO_CENTRES - plain.points_ras[0], axis=1)) > TWO_RADIUS + 2.0
    model = dataclasses.replace(centroid_model, metadata=dataclasses.replace(
        centroid_model.metadata, onto_skin=("Centroid",)))
    result = detect_landmarks(volume, ijk_to_ras, model)
    distance = np.min(np.linalg.norm(TWO_CENTRES - result.points_ras[0], axis=1))
    assert abs(distance - TWO_RADIUS) <= np.linalg.norm(SPACING) / 2
    assert np.linalg.norm(result.points_ras[0] - plain.points_ras[0]) < ONTO_SKIN_SEARCH_MM
    assert result.found.tolist() == plain.found.tolist() == [True]
