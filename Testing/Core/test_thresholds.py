"""The thresholds that decide what is found and what is body: the model's calibrated confidence threshold (not 0.5)
and the caller's override, through the API, ``detect`` and ``batch``; table removal in millimetres, not voxels."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
from analytic_model import CONFIDENCE_LOGITS, save_confidence_model

from LandmarkDetectorLib.cli import main
from LandmarkDetectorLib.markups import read_markups
from LandmarkDetectorLib.model import load_model
from LandmarkDetectorLib.pipeline import detect_landmarks, in_scanned_field, landmark_found, projection_settings
from LandmarkDetectorLib.projection import ProjectionConfig, project_volume
from LandmarkDetectorLib.volume_io import write_volume

from phantoms import AIR_HU, add_box, make_ijk_to_ras, rotation, spheres_volume

NAMES = tuple(CONFIDENCE_LOGITS)
FOUND_BY_MODEL = [True, True, False, False, False]  # Above, AtThreshold, JustBelow, Between, Below


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "confident.pt"
    save_confidence_model(path)
    return path


@pytest.fixture(scope="module")
def calibrated(model_path):
    return load_model(model_path).metadata.confidence_threshold


@pytest.fixture(scope="module")
def sphere():
    shape = (31, 33, 35)
    ijk_to_ras = make_ijk_to_ras(np.diag([-1.0, -1.0, 1.0]), (2.0, 2.0, 2.0), shape, (0.0, 0.0, 0.0))
    return spheres_volume(shape, ijk_to_ras, (0.0, 0.0, 0.0), 20.0), ijk_to_ras


def test_the_model_threshold_is_not_a_half(calibrated):
    assert 0.8 < calibrated < 0.85


@pytest.mark.parametrize("override, expected", [
    (None, FOUND_BY_MODEL),
    (0.6, [True, True, True, True, False]),
    (0.9, [True, False, False, False, False]),
    (0.0, [True] * 5),
    (1.0, [False] * 5),
])
def test_detection_finds_what_reaches_the_threshold(model_path, calibrated, sphere, override, expected):
    landmarks = detect_landmarks(*sphere, load_model(model_path), "cpu", confidence_threshold=override)
    assert landmarks.names == NAMES
    assert landmarks.found.tolist() == expected, landmarks.confidence
    assert landmarks.confidence[1] == calibrated  # exactly: "found" is probability >= threshold
    assert landmarks.confidence_threshold.tolist() == [calibrated if override is None else override] * len(NAMES)
    assert [p.status for p in landmarks.to_point_list().points] == \
        ["defined" if f else "undefined" for f in expected]


@pytest.mark.parametrize("override, expected", [(None, [True, False, True, False, False]),
                                                (0.6, [True, True, True, True, False])])
def test_a_landmarks_own_threshold_replaces_the_models_unless_the_caller_gives_one(model_path, calibrated, sphere,
                                                                                   override, expected):
    model = load_model(model_path)
    below = float(detect_landmarks(*sphere, model, "cpu").confidence[NAMES.index("JustBelow")])
    own = {"AtThreshold": np.nextafter(calibrated, 1.0), "JustBelow": below}  # one more strict, one less
    model.metadata = dataclasses.replace(model.metadata, landmark_thresholds=own)
    landmarks = detect_landmarks(*sphere, model, "cpu", confidence_threshold=override)
    assert landmarks.found.tolist() == expected, landmarks.confidence
    thresholds = [own.get(n, calibrated) for n in NAMES] if override is None else [override] * len(NAMES)
    assert landmarks.confidence_threshold.tolist() == thresholds


def test_landmark_found_compares_with_the_threshold_given():
    in_field = np.ones((1, 10, 10), dtype=bool)
    uv = np.full((1, 4, 2), 5.0)
    probability = np.array([[0.8, np.nextafter(0.8, 0.0), 0.6, 0.95]])
    np.testing.assert_array_equal(landmark_found(uv, probability, in_field, 0.8), [[True, False, False, True]])
    np.testing.assert_array_equal(landmark_found(uv, probability, in_field, 0.6), [[True, True, True, True]])


@pytest.fixture(scope="module")
def sphere_folder(tmp_path_factory, sphere):
    folder = tmp_path_factory.mktemp("spheres")
    write_volume(folder / "ball.nrrd", *sphere)
    return folder


@pytest.mark.parametrize("flags, expected", [([], FOUND_BY_MODEL), (["--confidence-threshold", "0.6"],
                                                                    [True, True, True, True, False])])
def test_command_line_detect_and_batch_use_the_threshold(tmp_path, model_path, sphere_folder, flags, expected):
    model = ["-m", str(model_path), "--device", "cpu"]
    out = tmp_path / "ball.mrk.json"
    assert main(["detect", str(sphere_folder / "ball.nrrd"), "-o", str(out), *model, *flags]) == 0
    assert [p.status == "defined" for p in read_markups(out).points] == expected
    assert main(["batch", str(sphere_folder), "-o", str(tmp_path / "batch"), *model, *flags]) == 0
    assert [p.status == "defined" for p in read_markups(tmp_path / "batch" / "ball.mrk.json").points] == expected
    with open(tmp_path / "batch" / "summary.csv", newline="") as f:
        assert next(csv.DictReader(f))["found"] == str(sum(expected))


def slab_volume(direction, step_mm: float, thickness_mm: float, plate_mm: float):
    """A box 'body' ``thickness_mm`` thick along A (the AP rays) and a plate ``plate_mm`` thick below it, with
    voxels ``step_mm`` long along A and 4 mm across."""
    spacing = [4.0, 4.0, 4.0]
    axis = int(np.argmax(np.abs(direction[1])))  # the voxel axis along A
    spacing[axis] = step_mm
    shape_kji = [25, 25, 25]
    shape_kji[2 - axis] = int(round(120.0 / step_mm))
    ijk_to_ras = make_ijk_to_ras(direction, tuple(spacing), tuple(shape_kji), (0.0, 0.0, 0.0))
    volume = np.full(shape_kji, AIR_HU, dtype=np.int16)
    add_box(volume, ijk_to_ras, (-20, 40 - thickness_mm, -20), (20, 40, 20), 40)  # body, 40 x 40 mm across
    add_box(volume, ijk_to_ras, (-100, -50, -100), (100, -50 + plate_mm, 100), 300)  # plate over the whole field
    return volume, ijk_to_ras


@pytest.mark.parametrize("direction", [np.diag([-1.0, -1.0, 1.0]), rotation((0, 0, 1), 90) @ np.diag([1.0, 1, -1]),
                                       rotation((1, 1, 1), 120)], ids=["lps", "permuted", "cycled"])
@pytest.mark.parametrize("step_mm, body_mm, plate_mm", [(3.0, 30.0, 9.0), (0.5, 30.0, 10.0)])
def test_table_removal_counts_millimetres_not_voxels(direction, step_mm, body_mm, plate_mm):
    """With 3 mm voxels along the rays, the 30 mm body is 10 voxels (fewer than 15) and must stay; with 0.5 mm
    voxels, the 10 mm plate is 20 voxels (more than 15) and must go."""
    volume, ijk_to_ras = slab_volume(direction, step_mm, body_mm, plate_mm)
    body_only = np.where(volume == 300, AIR_HU, volume).astype(np.int16)
    for pixels in (None, 4.0):
        config = ProjectionConfig(threshold=-500, table_removal_mm=15.0, pixel_spacing_mm=pixels)
        image = project_volume(volume, ijk_to_ras, config)
        expected = project_volume(body_only, ijk_to_ras, ProjectionConfig(threshold=-500, table_removal_mm=0.0,
                                                                          pixel_spacing_mm=pixels))
        assert 0.05 < expected.silhouette.mean() < 0.5
        np.testing.assert_array_equal(image.silhouette, expected.silhouette)


def test_found_reaches_half_a_pixel_beyond_the_scanned_field_and_no_further():
    """In-field rows 2-7 and columns 1-6 (not square, so rows and columns cannot be swapped unseen)."""
    in_field = np.zeros((1, 10, 8), dtype=bool)
    in_field[0, 2:8, 1:7] = True
    edge = 1e-9
    uv = np.array([[[0.5, 4.0], [0.5 - edge, 4.0], [6.5, 4.0], [6.5 + edge, 4.0],
                    [3.0, 1.5], [3.0, 1.5 - edge], [3.0, 7.5], [3.0, 7.5 + edge]]])
    found = landmark_found(uv, np.ones((1, 8)), in_field, 0.5)
    np.testing.assert_array_equal(found, [[True, False, True, False, True, False, True, False]])
    nothing = landmark_found(uv, np.ones((1, 8)), np.zeros_like(in_field), 0.5)
    assert not nothing.any()


def test_projection_settings_replace_only_what_is_given(model_path):
    model = load_model(model_path)
    assert projection_settings(model) == model.metadata.projection
    changed = projection_settings(model, threshold=-300.0, table_removal_mm=7.5)
    assert (changed.threshold, changed.table_removal_mm) == (-300.0, 7.5)
    assert changed.surface_min_mm == model.metadata.projection.surface_min_mm
    assert projection_settings(model, table_removal_mm=0.0).threshold == model.metadata.projection.threshold


def test_an_empty_field_loses_only_its_own_canvas():
    in_field = np.ones((3, 10, 10), dtype=bool)
    in_field[0] = False
    uv = np.array([[[5.0, 5.0]], [[5.0, 5.0]], [[20.0, 5.0]]])
    found = landmark_found(uv, np.ones((3, 1)), in_field, 0.5)
    np.testing.assert_array_equal(found, [[False], [True], [False]])


def test_the_scanned_field_judges_each_point_at_the_volumes_depth():
    """A volume 400 mm anterior of the origin: a point 500 mm in front of it along the (not unit) ray is in the field,
    one 40 mm to the side is not; each point on its own."""
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (2.0, 2.0, 2.0), (10, 12, 14), (30.0, 400.0, -250.0))
    centre = np.array([30.0, 400.0, -250.0])
    points = centre + np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 500.0, 0.0], [13.9, 0.0, 0.0]])
    inside = in_scanned_field(points, np.array([0.0, -2.0, 0.0]), ijk_to_ras, (10, 12, 14), margin_mm=0.0)
    np.testing.assert_array_equal(inside, [True, False, True, True])
    assert not in_scanned_field(points[3:] + [0.2, 0.0, 0.0], np.array([0.0, -2.0, 0.0]), ijk_to_ras, (10, 12, 14),
                                margin_mm=0.0)[0]


def test_a_point_beside_an_oblique_volume_is_judged_at_the_depth_of_its_centre():
    """Guards the depth a point is moved to: a 20 x 20 mm volume turned 45 degrees about S is a diamond seen along A,
    widest (14.14 mm either side) only at the depth of its centre, so a point 14.1 mm to the right is in the field at
    that depth and out at any other."""
    ijk_to_ras = make_ijk_to_ras(rotation((0.0, 0.0, 1.0), 45.0), (2.0, 2.0, 2.0), (6, 10, 10), (30.0, 400.0, -250.0))
    centre = np.array([30.0, 400.0, -250.0])
    points = centre + np.array([[14.1, -300.0, 0.0], [-14.1, 250.0, 3.0], [14.2, -300.0, 0.0], [0.0, 0.0, 0.0]])
    inside = in_scanned_field(points, np.array([0.0, 3.0, 0.0]), ijk_to_ras, (6, 10, 10), margin_mm=0.0)
    np.testing.assert_array_equal(inside, [True, True, False, True])
