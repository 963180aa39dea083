"""Limb tips at the end of the limb read from the volume (limbtips.py), and detection with a model that lists them:
flipped, permuted and oblique orientations, anisotropic spacing, odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
from analytic_model import save_limb_model

from LandmarkDetectorLib.limbtips import TIP_SEARCH_MM, at_limb_tips, limb_tip
from LandmarkDetectorLib.model import load_model
from LandmarkDetectorLib.pipeline import detect_landmarks

from phantoms import (
    AIR_HU,
    ALIGNED_DIRECTIONS,
    ANISOTROPIC_SPACING_MM,
    OBLIQUE_DIRECTIONS,
    TISSUE_HU,
    make_ijk_to_ras,
    rotation,
    voxel_centres_ras,
)

SPACING = ANISOTROPIC_SPACING_MM
SHAPE = (71, 67, 77)  # odd sizes, about 100 mm each way
AXIS = np.array([1.0, -2.0, 2.0]) / 3.0  # the limb's direction, oblique to every volume axis
ACROSS = np.array([2.0, 2.0, 1.0]) / 3.0  # at right angles to it
RADIUS = 8.0
TIP = 15.0 * AXIS  # the centre of the limb's end cap; its end lies RADIUS beyond
END = TIP + RADIUS * AXIS
POINT = TIP - 25.0 * AXIS + 5.0 * ACROSS  # the network's point: short of the end, beside the axis
SHOULDER = TIP - 600.0 * (rotation(tuple(ACROSS), 8.0) @ AXIS)  # the network's root, 8 degrees off the limb's line


def capsules(shape, ijk_to_ras, segments, radii):
    """Air volume with tissue capsules (segment ends a, b in RAS mm, each with its radius)."""
    ras = voxel_centres_ras(shape, ijk_to_ras)
    inside = np.zeros(shape, dtype=bool)
    for (a, b), radius in zip(segments, np.broadcast_to(radii, len(segments)), strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        t = np.clip((ras - a) @ (b - a) / max((b - a) @ (b - a), 1e-12), 0.0, 1.0)  # a == b: a ball
        inside |= np.linalg.norm(ras - (a + t[..., None] * (b - a)), axis=-1) <= radius
    return np.where(inside, TISSUE_HU, AIR_HU).astype(np.int16)


def limb(direction_ras):
    """A limb running from far outside the volume to TIP, in a volume centred on the origin."""
    ijk_to_ras = make_ijk_to_ras(direction_ras, SPACING, SHAPE, (0.0, 0.0, 0.0))
    return capsules(SHAPE, ijk_to_ras, [(TIP - 300.0 * AXIS, TIP)], RADIUS), ijk_to_ras


@pytest.mark.parametrize("index", range(len(ALIGNED_DIRECTIONS + OBLIQUE_DIRECTIONS)))
def test_the_end_of_a_limb_is_found_in_every_orientation(index):
    volume, ijk_to_ras = limb((ALIGNED_DIRECTIONS + OBLIQUE_DIRECTIONS)[index])
    found = limb_tip(volume, ijk_to_ras, POINT, SHOULDER, 0.0)
    direction = (POINT - SHOULDER) / np.linalg.norm(POINT - SHOULDER)
    # Along the direction searched the surface is placed to half a voxel's diagonal; across it, the extreme of the
    # voxelized round end cap is defined to about sqrt(2 r d) for a roughness d of half that diagonal; the direction
    # is 8 degrees off the limb's, which moves the cap's extreme by r sin(8 degrees).
    half_diagonal = np.linalg.norm(SPACING) / 2
    expected = TIP + RADIUS * direction
    assert abs((found - expected) @ direction) <= half_diagonal
    assert np.linalg.norm(found - expected) <= np.sqrt(2 * RADIUS * half_diagonal)
    assert np.linalg.norm(found - END) <= RADIUS * np.sin(np.radians(8.0)) + np.sqrt(2 * RADIUS * half_diagonal)


def test_the_end_lies_on_the_surface_half_a_voxel_beyond_the_last_voxel_centres():
    # Over sub-voxel shifts of a limb along an axis of the grid, the end's mean error along the limb is near 0; the
    # last body voxels' centres lie on average a quarter to half a voxel short of the surface.
    spacing = (1.5, 2.0, 2.5)
    ijk_to_ras = make_ijk_to_ras(np.eye(3), spacing, (41, 31, 45), (0.0, 0.0, 0.0))
    down = np.array([0.0, 0.0, -1.0])
    errors = []
    for shift in np.linspace(0.0, spacing[2], 7, endpoint=False):
        tip = np.array([0.0, 0.0, -20.0 - shift])
        volume = capsules((41, 31, 45), ijk_to_ras, [(tip - 200.0 * down, tip)], RADIUS)
        found = limb_tip(volume, ijk_to_ras, tip - 20.0 * down, tip - 500.0 * down, 0.0)
        errors.append((found - (tip + RADIUS * down)) @ down)
    assert abs(np.mean(errors)) <= 0.25 and np.max(np.abs(errors)) <= spacing[2] / 2 + 1e-9


def test_fingers_that_part_within_the_search_join_at_the_palm():
    # Two fingers 26 mm apart that join at a palm 75 mm from the network's point, beyond TIP_SEARCH_MM: the point
    # lies near the shorter finger, and the end is the longer one's.
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (1.5, 1.5, 1.5), (91, 61, 71), (0.0, 0.0, 0.0))
    down = np.array([0.0, 0.0, -1.0])
    palm_long, palm_short = np.array([-13.0, 0.0, 50.0]), np.array([13.0, 0.0, 50.0])
    long_tip, short_tip = palm_long + 100.0 * down, palm_short + 85.0 * down
    volume = capsules((91, 61, 71), ijk_to_ras, [(palm_long, long_tip), (palm_short, short_tip),
                                                 (palm_long, palm_short), (palm_long - 60.0 * down, palm_long)],
                      [6.0, 6.0, 9.0, 12.0])
    point = short_tip - 10.0 * down
    assert np.linalg.norm(point - palm_short) > TIP_SEARCH_MM
    found = limb_tip(volume, ijk_to_ras, point, point - 500.0 * down, 0.0)
    np.testing.assert_allclose(found, long_tip + 6.0 * down, atol=1.0)


def test_no_end_where_the_limb_runs_on_or_leaves_the_volume_or_the_end_is_bulky():
    volume, ijk_to_ras = limb(np.eye(3))
    assert limb_tip(volume, ijk_to_ras, POINT, SHOULDER, 0.0) is not None
    # A thin limb (a finger's width, not bulky) with the point 70 mm short of its end: it runs on to the search's
    # edge.
    thin = capsules(SHAPE, ijk_to_ras, [(TIP - 300.0 * AXIS, TIP)], 5.0)
    assert limb_tip(thin, ijk_to_ras, TIP - 40.0 * AXIS, SHOULDER, 0.0) is not None
    assert limb_tip(thin, ijk_to_ras, TIP - 70.0 * AXIS, SHOULDER, 0.0) is None
    # The volume ends inside the limb's end cap (its last voxels along i at R 6.5 mm, the end at R 7.7 mm): the limb
    # may go on beyond the scanned field.
    assert END[0] > 6.5 + 1.0 and (ijk_to_ras @ [43, 0, 0, 1])[0] == pytest.approx(6.5)
    assert limb_tip(volume[..., :44], ijk_to_ras, POINT, SHOULDER, 0.0) is None
    # A trunk beside the end (a hand on the belly), joined to the limb: its own extreme, 30 mm beyond the limb's
    # along the limb, is no limb's end: the body within BULK_RADIUS_MM of it is bulky.
    trunk = capsules(SHAPE, ijk_to_ras, [(TIP + 36.0 * ACROSS, TIP + 36.0 * ACROSS)], 30.0)
    assert limb_tip(np.maximum(volume, trunk), ijk_to_ras, POINT, SHOULDER, 0.0) is None
    # A small body farther out than the limb's end, clear of the limb: left out, not connected to the limb.
    pebble_centre = TIP + 30.0 * ACROSS + 20.0 * AXIS
    pebble = capsules(SHAPE, ijk_to_ras, [(pebble_centre, pebble_centre)], 5.0)
    np.testing.assert_allclose(limb_tip(np.maximum(volume, pebble), ijk_to_ras, POINT, SHOULDER, 0.0),
                               limb_tip(volume, ijk_to_ras, POINT, SHOULDER, 0.0))
    # No body near the point, the point off the volume, the point on its root.
    assert limb_tip(np.full(SHAPE, AIR_HU, dtype=np.int16), ijk_to_ras, POINT, SHOULDER, 0.0) is None
    assert limb_tip(volume, ijk_to_ras, POINT + 500.0 * ACROSS, SHOULDER, 0.0) is None
    assert limb_tip(volume, ijk_to_ras, POINT, POINT, 0.0) is None


def test_limb_tips_move_with_both_views_and_measure_their_ends_distance():
    volume, ijk_to_ras = limb(OBLIQUE_DIRECTIONS[1])
    names = ("Shoulder", "Tip", "Other")
    points = np.array([SHOULDER, POINT, [1.0, 2.0, 3.0]])
    end = limb_tip(volume, ijk_to_ras, POINT, SHOULDER, 0.0)
    nearby = points.copy()
    nearby[1] = POINT - 6.0 * AXIS  # the mirror's estimate, 6 mm further back along the limb: the same end
    moved, disagreement, no_end = at_limb_tips(points, [points, nearby], np.array([1.0, 2.0, 3.0]), names,
                                               {"Tip": "Shoulder"}, volume, ijk_to_ras, 0.0)
    np.testing.assert_array_equal(moved[[0, 2]], points[[0, 2]])
    np.testing.assert_allclose(moved[1], end)
    assert disagreement[1] < 1.0 and disagreement[[0, 2]].tolist() == [1.0, 3.0]
    assert no_end.tolist() == [False, False, False]
    # The mirror's estimate in the air far from the limb: no end there, the disagreement infinite; the point itself
    # still moves.
    astray = points.copy()
    astray[1] = POINT + 200.0 * ACROSS
    moved, disagreement, no_end = at_limb_tips(points, [points, astray], np.zeros(3), names, {"Tip": "Shoulder"},
                                               volume, ijk_to_ras, 0.0)
    np.testing.assert_allclose(moved[1], end)
    assert np.isinf(disagreement[1]) and not no_end.any()
    # The point itself without an end: it stays and is flagged; one view (no mirror check) keeps the disagreement.
    moved, disagreement, no_end = at_limb_tips(astray, [astray], np.full(3, np.nan), names, {"Tip": "Shoulder"},
                                               volume, ijk_to_ras, 0.0)
    np.testing.assert_array_equal(moved, astray)
    assert np.isnan(disagreement).all() and no_end.tolist() == [False, True, False]
    # With two views whose estimates lie on the limb: the point has no end, so the tip is not in the field and its
    # views are not searched; the disagreement is infinite.
    moved, disagreement, no_end = at_limb_tips(astray, [points, nearby], np.zeros(3), names, {"Tip": "Shoulder"},
                                               volume, ijk_to_ras, 0.0)
    np.testing.assert_array_equal(moved, astray)
    assert np.isinf(disagreement[1]) and no_end.tolist() == [False, True, False]


@pytest.fixture(scope="module")
def limb_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "limbs.pt"
    save_limb_model(path)
    return load_model(path)


@pytest.mark.parametrize("orientation", [np.eye(3), np.diag([-1.0, 1.0, -1.0]), OBLIQUE_DIRECTIONS[0]],
                         ids=["RAS", "flipped", "oblique"])
def test_detection_places_limb_tips_at_the_ends_and_reports_a_cut_one_not_found(limb_model, orientation):
    # Two limbs hanging down 30 mm either side of the midline, from S +60 to -60 mm (ends at -68 mm). The model's
    # tips lie 10 canvas pixels (15 mm) below the silhouette's centroid, 53 mm short of the ends.
    shape = (125, 81, 101) if orientation is OBLIQUE_DIRECTIONS[0] else (109, 29, 85)  # an oblique box is larger
    spacing = (1.5, 1.7, 1.3)
    ijk_to_ras = make_ijk_to_ras(orientation, spacing, shape, (0.0, 0.0, 0.0))
    limbs = [((side * 30.0, 0.0, 60.0), (side * 30.0, 0.0, -60.0)) for side in (-1.0, 1.0)]
    volume = capsules(shape, ijk_to_ras, limbs, RADIUS)
    result = detect_landmarks(volume, ijk_to_ras, limb_model)
    assert result.found.tolist() == [True, True, True, True]
    tips = result.points_ras[2:]
    np.testing.assert_allclose(np.sort(tips[:, 0]), [-30.0, 30.0], atol=1.5)
    np.testing.assert_allclose(tips[:, 2], -60.0 - RADIUS, atol=np.linalg.norm(spacing) / 2)
    assert np.all(result.disagreement_mm[2:] < 1.0)
    if orientation is OBLIQUE_DIRECTIONS[0]:
        return
    # The same limbs in a volume whose last slices end 4 mm above the limbs' ends: no end, not found.
    slice_s = (ijk_to_ras @ np.column_stack([np.zeros((shape[0], 2)), np.arange(shape[0]), np.ones(shape[0])]).T)[2]
    kept = slice_s >= -64.0
    first = int(np.argmax(kept))
    cut_to_ras = ijk_to_ras.copy()
    cut_to_ras[:3, 3] = (ijk_to_ras @ [0, 0, first, 1])[:3]
    cut = detect_landmarks(volume[kept], cut_to_ras, limb_model)
    assert cut.found.tolist() == [True, True, False, False]
    assert np.isinf(cut.disagreement_mm[2:]).all()
    assert cut.to_point_list().points[2].description == \
        f"confidence {cut.confidence[2]:.3f}; no body end found near the estimates; not found"
    # Not in the scanned field either: not found even where the mirror check lets every disagreement pass.
    lenient = detect_landmarks(volume[kept], cut_to_ras, limb_model, mirror_tolerance_mm=np.inf)
    assert lenient.found.tolist() == [True, True, False, False]
