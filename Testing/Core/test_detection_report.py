"""How a detection is shown to people: landmarks that were not found get no position and no cross in the picture, the
picture shows the volume only, the low-confidence colour is reachable whatever the model's threshold, and a
detection that looks wrong as a whole says so in one line."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

from LandmarkDetectorLib import detect_landmarks, load_model
from LandmarkDetectorLib.cli import format_landmarks, landmarks_json
from LandmarkDetectorLib.framing import CanvasSpec
from LandmarkDetectorLib.images import pyplot
from LandmarkDetectorLib.markups import MarkupsPoint, PointList
from LandmarkDetectorLib.model import model_file, read_metadata
from LandmarkDetectorLib.pipeline import Landmarks, detection_warning
from LandmarkDetectorLib.preview import preview_figure
from LandmarkDetectorLib.projection import ProjectedImage, view_pixel_to_ras
from LandmarkDetectorLib.results import result_rows
from LandmarkDetectorLib.synthetic.dataset import synthesize_case

SEED = 515_151  # not a training or evaluation seed of the bundled models


@pytest.fixture(scope="module")
def hand_model():
    return load_model("hand-mr", "cpu")


@pytest.fixture(scope="module")
def palm(hand_model):
    """A hand MR cut across the fingers, detected: some landmarks found, some not."""
    case = synthesize_case("hand", SEED, 0)
    keep = case.voxels_kji.shape[1] * 55 // 100
    landmarks = detect_landmarks(np.ascontiguousarray(case.voxels_kji[:, :keep]), case.ijk_to_ras, hand_model, "cpu")
    assert landmarks.found.any() and not landmarks.found.all(), landmarks.confidence
    return landmarks


def test_table_and_json_give_no_position_for_landmarks_not_found(palm):
    lines = format_landmarks(palm).splitlines()[1:]
    for line, found, point in zip(lines, palm.found, palm.points_ras, strict=True):
        assert (f"{point[0]:7.1f}" in line) == bool(found), line
        assert line.endswith("-") != bool(found), line
    document = landmarks_json(palm, "palm.nrrd", "hand-mr", None, "")
    assert [p["position_ras"] is None for p in document["landmarks"]] == list(~palm.found)


def test_preview_shows_the_volume_and_lists_the_landmarks_not_found(palm):
    image = palm.canvas.image
    figure = preview_figure(image, palm, title="palm")
    try:
        axes = figure.axes[0]
        du, dv = image.pixel_spacing_mm
        height, width = image.shape
        assert axes.get_xlim() == pytest.approx((-0.5 * du, (width - 0.5) * du))  # nothing widens the picture
        assert sorted(axes.get_ylim()) == pytest.approx([-0.5 * dv, (height - 0.5) * dv])
        assert len(axes.lines) == int(palm.found.sum())  # one circle per found landmark, no crosses
        listed = next(t.get_text() for t in axes.texts if t.get_text().startswith("not found"))
        assert listed.splitlines()[1:] == [n for n, found in zip(palm.names, palm.found, strict=True) if not found]
    finally:
        pyplot().close(figure)


@pytest.mark.parametrize("threshold", [0.5, 0.85, 0.95])
def test_low_confidence_is_reachable_for_every_threshold(threshold):
    confidence = np.array([threshold + 0.01, 0.999, threshold - 0.1])
    landmarks = Landmarks(("A", "B", "C"), np.zeros((3, 3)), confidence, confidence >= threshold,
                          confidence_threshold=threshold)
    points = PointList(tuple(MarkupsPoint(n, (0.0, 0.0, 0.0)) for n in "AB") +
                       (MarkupsPoint("C", (0.0, 0.0, 0.0), status="undefined"),))
    assert [row.level for row in result_rows(landmarks, points)] == ["low", "found", "not_found"]


def test_low_confidence_follows_each_landmarks_own_threshold():
    confidence = np.array([0.9, 0.9])  # A held to 0.5 (low below 0.75), B to 0.85 (low below 0.925)
    landmarks = Landmarks(("A", "B"), np.zeros((2, 3)), confidence, np.array([True, True]),
                          confidence_threshold=np.array([0.5, 0.85]))
    points = PointList(tuple(MarkupsPoint(n, (0.0, 0.0, 0.0)) for n in "AB"))
    assert [row.level for row in result_rows(landmarks, points)] == ["found", "low"]
    document = landmarks_json(landmarks, "v.nrrd", "m", None, "")
    assert [(p["confidence_threshold"], p["mirror_tolerance_mm"]) for p in document["landmarks"]] == \
        [(0.5, None), (0.85, None)]
    checked = dataclasses.replace(landmarks, mirror_tolerance_mm=np.array([5.0, 40.0]))
    assert [p["mirror_tolerance_mm"] for p in landmarks_json(checked, "v.nrrd", "m", None, "")["landmarks"]] == \
        [5.0, 40.0]


def test_json_says_which_landmarks_were_withheld_at_the_scans_edge():
    landmarks = Landmarks(("A", "B"), np.zeros((2, 3)), np.array([0.9, 0.9]), np.array([True, False]),
                          near_edge=np.array([False, True]))
    document = landmarks_json(landmarks, "v.nrrd", "m", None, "")
    assert [(p["found"], p["near_edge"]) for p in document["landmarks"]] == [(True, False), (False, True)]


def test_rows_follow_points_by_label_when_the_user_reorders_them():
    landmarks = Landmarks(("A", "B", "C"), np.zeros((3, 3)), np.array([0.99, 0.98, 0.1]),
                          np.array([True, True, False]), confidence_threshold=0.5)
    points = PointList((MarkupsPoint("C", (0.0, 0.0, 0.0), status="undefined"), MarkupsPoint("B", (4.0, 5.0, 6.0)),
                        MarkupsPoint("extra", (1.0, 1.0, 1.0)), MarkupsPoint("A", (1.0, 2.0, 3.0))))
    rows = result_rows(landmarks, points)
    assert [(r.name, r.point_index, r.level, r.position_ras) for r in rows] == [
        ("A", 3, "found", (1.0, 2.0, 3.0)), ("B", 1, "found", (4.0, 5.0, 6.0)), ("C", 0, "not_found", None)]
    assert [r.name for r in result_rows(landmarks, PointList(points.points[1:]))] == ["A", "B"]  # C removed


def test_a_detection_that_looks_wrong_says_so_in_one_line(palm, hand_model):
    assert detection_warning(palm, hand_model.metadata) == ""  # a hand MR for the hand model: nothing to say
    nothing = dataclasses.replace(palm, found=np.zeros_like(palm.found))
    assert detection_warning(nothing, hand_model.metadata).startswith("no landmark was found.")
    body = read_metadata(model_file("wholebody-ct"))
    warning = detection_warning(palm, body)
    assert "looks like MR (no air near -1000 HU) but model wholebody-ct is for CT" in warning
    assert "far less than" in warning
    assert "\n" not in warning
    assert "looks like" not in detection_warning(palm, body, user_threshold=True)  # a set threshold tells nothing
    ct_like = dataclasses.replace(palm, canvas=types.SimpleNamespace(
        image=dataclasses.replace(palm.canvas.image, threshold=-500.0)))
    assert "looks like CT but model hand-mr is for MR" in detection_warning(ct_like, hand_model.metadata)


def _small_body_detection(body_px: tuple[int, int], found: bool) -> Landmarks:
    """A detection whose canvas holds a body of ``body_px`` (columns, rows) pixels of 2 x 3 mm."""
    silhouette = np.zeros((40, 50), dtype=bool)
    silhouette[5:5 + body_px[1], 7:7 + body_px[0]] = True
    depth = np.where(silhouette, 10.0, np.nan).astype(np.float32)
    image = ProjectedImage(silhouette=silhouette, depth_mm=depth, pixel_to_ras=view_pixel_to_ras("ap", (0, 0, 0),
                                                                                                 (2.0, 3.0)),
                           threshold=0.5, view="ap")
    canvas = types.SimpleNamespace(image=image)
    return Landmarks(names=("A",), points_ras=np.zeros((1, 3)), confidence=np.ones(1), found=np.array([found]),
                     canvas=canvas)


def test_a_body_far_smaller_than_the_models_field_is_named_with_both_sizes(hand_model):
    """The model sees 64 x 96 pixels of 4 mm: 256 x 384 mm. A body of 10 x 5 pixels of 2 x 3 mm spans 20 x 15 mm."""
    spec = CanvasSpec(height=96, width=64, pixel_spacing_mm=4.0)
    metadata = dataclasses.replace(hand_model.metadata, canvas=spec, training={})
    assert detection_warning(_small_body_detection((10, 5), True), metadata) == (
        "the body spans only 20 x 15 mm, far less than the 256 x 384 mm that model hand-mr covers. Check that the "
        "volume and the model go together.")
    assert detection_warning(_small_body_detection((10, 5), False), metadata).startswith(
        "no landmark was found; the body spans only 20 x 15 mm")
    assert detection_warning(_small_body_detection((32, 5), True), metadata) == ""  # 64 mm: a quarter of 256 mm
    assert detection_warning(_small_body_detection((31, 5), True), metadata) != ""
    assert detection_warning(_small_body_detection((10, 32), True), metadata) == ""  # 96 mm: a quarter of 384 mm
    points = _small_body_detection((10, 5), False).to_point_list()  # no mirror check: no disagreement given
    assert points.name == "Landmarks" and [(p.status, p.description) for p in points.points] == [
        ("undefined", "confidence 1.000; not found")]
    no_canvas = dataclasses.replace(_small_body_detection((10, 5), False), canvas=None)
    assert detection_warning(no_canvas, metadata) == "no landmark was found. Check that the volume and the model go " \
        "together."
