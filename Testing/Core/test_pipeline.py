"""Detection path (projection -> canvas -> network -> RAS) with an analytic model, in every orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analytic_model import SPEC

from LandmarkDetectorLib import pipeline
from LandmarkDetectorLib.errors import Cancelled, InputError
from LandmarkDetectorLib.framing import CanvasSpec
from LandmarkDetectorLib.model import ModelMetadata, load_model, save_model
from LandmarkDetectorLib.pipeline import check_body, detect_landmarks, framed, landmark_found, model_projection
from LandmarkDetectorLib.projection import ProjectedImage, ProjectionConfig, view_pixel_to_ras

from phantoms import make_ijk_to_ras, rotation, signed_permutations, spheres_volume

CENTRE_RAS = np.array([12.0, -7.0, 20.0])
RADIUS_MM = 25.0
DIRECTIONS = [signed_permutations()[i] for i in (0, 7, 21, 46)] + [rotation((1, 2, 0.5), 30),
                                                                   rotation((0, 1, 1), 60) @ np.diag([1.0, -1, 1])]


@pytest.mark.parametrize("index", range(len(DIRECTIONS)))
def test_sphere_centroid_lands_on_the_sphere(centroid_model, index):
    shape = (41, 47, 37)
    ijk_to_ras = make_ijk_to_ras(DIRECTIONS[index], (1.3, 1.9, 1.6), shape, (10.0, -5.0, 18.0))
    volume = spheres_volume(shape, ijk_to_ras, CENTRE_RAS, RADIUS_MM)
    result = detect_landmarks(volume, ijk_to_ras, centroid_model)
    # The mean surface depth over a sphere's disk lies 2/3 of the radius in front of (anterior to) its centre.
    expected = CENTRE_RAS + np.array([0.0, 2 * RADIUS_MM / 3, 0.0])
    np.testing.assert_allclose(result.points_ras[0], expected, atol=1.0)
    assert result.names == ("Centroid",) and result.found.tolist() == [True]
    assert result.confidence[0] > 0.99
    points = result.to_point_list()
    assert points.points[0].status == "defined" and "confidence" in points.points[0].description


def test_progress_cancel_and_bad_input(centroid_model):
    shape = (21, 23, 25)
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (2.0, 2.0, 2.0), shape, (0.0, 0.0, 0.0))
    volume = spheres_volume(shape, ijk_to_ras, (0.0, 0.0, 0.0), 10.0)
    seen = []
    detect_landmarks(volume, ijk_to_ras, centroid_model, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        detect_landmarks(volume, ijk_to_ras, centroid_model, should_cancel=lambda: True)
    with pytest.raises(InputError, match="3D"):
        detect_landmarks(volume[0], ijk_to_ras, centroid_model)


def test_landmark_outside_the_scanned_field_is_not_found():
    in_field = np.zeros((1, 10, 8), dtype=bool)
    in_field[0, 2:8, 1:7] = True
    uv = np.array([[[3.0, 4.0], [0.2, 4.0], [3.0, 8.6], [6.4, 7.4]]])
    probability = np.array([[0.9, 0.9, 0.9, 0.4]])
    np.testing.assert_array_equal(landmark_found(uv, probability, in_field, 0.5), [[True, False, False, False]])


class BelowModel(torch.nn.Module):
    """One landmark ``offset_px`` canvas pixels below the lowest in-field row, at the silhouette's centroid column."""

    def __init__(self, offset_px: float):
        super().__init__()
        self.offset_px = offset_px

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        silhouette = x[:, 0]
        vs = torch.arange(silhouette.shape[1], dtype=x.dtype)
        rows = x[:, 2].amax(dim=2) > 0.5
        lowest = torch.where(rows, vs, torch.full_like(vs, -1e6)).amax(dim=-1)
        us = torch.arange(silhouette.shape[2], dtype=x.dtype)
        u = (silhouette.sum(dim=1) * us).sum(dim=-1) / silhouette.sum(dim=(1, 2)).clamp(min=1.0)
        uv = torch.stack([u, lowest + self.offset_px], dim=-1)[:, None, :]
        return uv, torch.zeros_like(uv[..., 0]), torch.full_like(uv[..., 0], 10.0)


@pytest.mark.parametrize("index", range(4))
def test_landmark_at_the_edge_of_the_scan_is_found_on_the_edge(tmp_path, index):
    """A sphere whose lower half lies below the last slice: a landmark predicted within half a canvas pixel past the
    volume's inferior edge is found and placed on that edge; one predicted further out is not found."""
    shape = (41, 47, 37)
    ijk_to_ras = make_ijk_to_ras(DIRECTIONS[index], (1.3, 1.9, 1.6), shape, CENTRE_RAS)
    volume = spheres_volume(shape, ijk_to_ras, CENTRE_RAS, RADIUS_MM)
    axis = int(np.argmax(np.abs(ijk_to_ras[2, :3])))  # the voxel axis along S
    centre_index = int(np.rint(np.linalg.solve(ijk_to_ras, np.append(CENTRE_RAS, 1.0))[axis]))
    keep = slice(centre_index, shape[2 - axis]) if ijk_to_ras[2, axis] > 0 else slice(0, centre_index + 1)
    index_kji = [slice(None)] * 3
    index_kji[2 - axis] = keep
    shift = np.eye(4)
    shift[axis, 3] = keep.start
    cut, cut_ijk_to_ras = np.ascontiguousarray(volume[tuple(index_kji)]), ijk_to_ras @ shift
    # The volume's inferior edge: half a voxel beyond its last voxel centre along S.
    edge_s = min(cut_ijk_to_ras[2, 3] + cut_ijk_to_ras[2, axis] * e for e in (-0.5, cut.shape[2 - axis] - 0.5))

    def detect(offset_px: float, edge_margin_mm: float = 0.0):
        path = tmp_path / f"below{offset_px}-{edge_margin_mm}.pt"
        save_model(BelowModel(offset_px), ModelMetadata(name="below", landmarks=("Bottom",), canvas=SPEC,
                                                        projection=ProjectionConfig(table_removal_mm=0.0),
                                                        landmark_edge_margins_mm={"Bottom": edge_margin_mm}), path)
        return detect_landmarks(cut, cut_ijk_to_ras, load_model(path))

    probe = detect(0.0)
    lowest_row_s = probe.points_ras[0, 2]
    rows_to_edge = (lowest_row_s - edge_s) / SPEC.pixel_spacing_mm  # canvas rows grow towards inferior
    just_past = detect(rows_to_edge + 0.4)
    assert just_past.found.tolist() == [True]
    assert just_past.points_ras[0, 2] == pytest.approx(edge_s, abs=1e-6)
    assert detect(rows_to_edge + 0.6).found.tolist() == [False]
    # With a 4 mm edge margin: found 5 mm inside the edge, not 3 mm inside it (found without the margin).
    mm_inside = {mm: rows_to_edge - mm / SPEC.pixel_spacing_mm for mm in (3.0, 5.0)}
    assert detect(mm_inside[5.0], 4.0).found.tolist() == [True]
    near = detect(mm_inside[3.0], 4.0)
    assert near.found.tolist() == [False] and near.near_edge.tolist() == [True]
    assert near.to_point_list().points[0].description.endswith("; too near the scan's edge; not found")
    assert detect(mm_inside[3.0]).found.tolist() == [True]
    # Not found for another reason (predicted beyond the edge): not flagged as near it.
    assert detect(rows_to_edge + 0.6, 4.0).near_edge.tolist() == [False]


@pytest.fixture(scope="module")
def oblique_sphere():
    """A sphere in a volume turned 30 degrees: projected row by row, with a progress report per row."""
    shape = (21, 23, 25)
    ijk_to_ras = make_ijk_to_ras(rotation((1, 2, 0.5), 30), (2.0, 2.0, 2.0), shape, (0.0, 0.0, 0.0))
    return spheres_volume(shape, ijk_to_ras, (0.0, 0.0, 0.0), 12.0), ijk_to_ras


def test_progress_gives_the_projection_the_first_80_percent_then_the_network_then_done(centroid_model,
                                                                                      oblique_sphere):
    seen = []
    detect_landmarks(*oblique_sphere, centroid_model, progress=lambda f, m: seen.append((f, m)))
    projecting, rest = seen[:-2], seen[-2:]
    assert len(projecting) > 2 and {m for _, m in projecting} == {"Resampling oblique volume"}
    np.testing.assert_allclose([f for f, _ in projecting], 0.8 * np.arange(1, len(projecting) + 1) / len(projecting))
    assert rest == [(0.85, "Running the network"), (1.0, "Done")]


@pytest.mark.parametrize(("cancel_from", "last_message"), [
    (None, None),  # from the start: before the projection's first row
    ("Resampling oblique volume", "Resampling oblique volume"),  # once projected: before the network runs
    ("Running the network", "Running the network"),  # while the network runs: before the result
])
def test_cancelling_stops_detection_at_the_next_stage(centroid_model, oblique_sphere, cancel_from, last_message):
    seen, cancel = [], [cancel_from is None]

    def progress(fraction: float, message: str) -> None:
        seen.append(message)
        if message == cancel_from and fraction == pytest.approx(0.8 if cancel_from.startswith("Resampling") else 0.85):
            cancel[0] = True

    with pytest.raises(Cancelled):
        detect_landmarks(*oblique_sphere, centroid_model, progress=progress, should_cancel=lambda: cancel[0])
    assert (seen[-1] if seen else None) == last_message


def test_the_result_keeps_the_canvas_the_network_saw(centroid_model, oblique_sphere):
    result = detect_landmarks(*oblique_sphere, centroid_model)
    assert result.canvas.in_field.shape == (SPEC.height, SPEC.width) and result.canvas.image.silhouette.any()
    assert result.canvas.image.pixel_spacing_mm == pytest.approx((SPEC.pixel_spacing_mm,) * 2)


def test_model_projection_projects_at_the_models_canvas_pixel_size(oblique_sphere):
    for projection in (ProjectionConfig(), ProjectionConfig(pixel_spacing_mm=3.0)):
        image = model_projection(*oblique_sphere, projection, SPEC)
        assert image.pixel_spacing_mm == pytest.approx((SPEC.pixel_spacing_mm,) * 2)


def test_framed_shifts_the_canvas_by_the_offset_in_canvas_pixels(oblique_sphere):
    image = model_projection(*oblique_sphere, ProjectionConfig(), SPEC)
    centred, shifted = framed(image, SPEC), framed(image, SPEC, offset_px=(2, -3))
    assert centred.image.silhouette.sum() > 100
    # Canvas pixel (u, v) of the shifted canvas is pixel (u + 2, v - 3) of the centred one.
    np.testing.assert_array_equal(shifted.image.silhouette[3:, :-2], centred.image.silhouette[:-3, 2:])
    np.testing.assert_allclose(shifted.image.pixel_to_ras @ [10.0, 20.0, 5.0, 1.0],
                               centred.image.pixel_to_ras @ [12.0, 17.0, 5.0, 1.0])


def test_a_model_named_is_loaded_on_the_device_asked_for_by_default_the_whole_body_ct(centroid_model,
                                                                                     oblique_sphere, monkeypatch):
    calls = []

    def fake_load_model(name, device="(not given)"):
        calls.append((name, device))
        return centroid_model

    monkeypatch.setattr(pipeline, "load_model", fake_load_model)
    detect_landmarks(*oblique_sphere)
    detect_landmarks(*oblique_sphere, "some-model", "cpu")
    assert calls == [("wholebody-ct", "auto"), ("some-model", "cpu")]


@pytest.mark.parametrize("threshold", [-0.01, 1.5])
def test_a_confidence_threshold_outside_0_to_1_is_refused(centroid_model, oblique_sphere, threshold):
    with pytest.raises(InputError, match=rf"^confidence_threshold must be a probability between 0 and 1, "
                                         rf"got {threshold}\.$"):
        detect_landmarks(*oblique_sphere, centroid_model, confidence_threshold=threshold)


def test_a_volume_thin_along_one_axis_is_refused_as_a_slab(centroid_model):
    """2 x 40 x 40 voxels of 1 x 2 x 5 mm: 2 mm along i, less than the 7.2 mm (5% of 96 pixels of 1.5 mm) needed."""
    volume = np.full((40, 40, 2), 40, dtype=np.int16)
    volume[:, :5] = -1000
    with pytest.raises(InputError) as raised:
        detect_landmarks(volume, np.diag([1.0, 2.0, 5.0, 1.0]), centroid_model)
    assert str(raised.value) == (
        "the volume is a slab too thin to hold the anatomy: its voxel grid spans 2 x 80 x 200 mm, less than 7.2 mm "
        "along one axis. Give a 3D volume of the whole anatomy (and check the voxel spacing, in mm, in its header).")


def test_a_volume_holding_only_a_table_plate_has_no_body_and_says_the_removal_layer(centroid_model):
    """A coronal plate 4 mm thick: above the threshold, but thinner along the AP rays than the 15 mm removed."""
    volume = np.full((40, 40, 40), -1000, dtype=np.int16)
    volume[:, 20:22, :] = 40
    with pytest.raises(InputError) as raised:
        detect_landmarks(volume, np.diag([2.0, 2.0, 2.0, 1.0]), centroid_model,
                         projection=ProjectionConfig(table_removal_mm=15.0))
    assert str(raised.value) == (
        "no body found in the volume: no voxel is above the body/air threshold -500 in a layer of at least 15 mm "
        "along a ray. Check that the volume holds the anatomy, or set a threshold that suits its intensities "
        "(--threshold).")


def _projected(columns: slice, rows: slice, spacing_uv_mm: tuple[float, float], view: str = "ap") -> ProjectedImage:
    """A 60 x 50-pixel projection whose silhouette fills ``rows`` x ``columns``."""
    silhouette = np.zeros((50, 60), dtype=bool)
    silhouette[rows, columns] = True
    return ProjectedImage(silhouette=silhouette, depth_mm=np.where(silhouette, 10.0, np.nan).astype(np.float32),
                          pixel_to_ras=view_pixel_to_ras(view, (0, 0, 0), spacing_uv_mm), threshold=0.5, view=view)


def test_check_body_names_the_silhouettes_size_in_mm_when_it_is_too_small():
    """3 columns of 2 mm from column 7, 4 rows of 1.25 mm from row 5: 6 x 5 mm, less than 7.2 mm."""
    with pytest.raises(InputError) as raised:
        check_body(_projected(slice(7, 10), slice(5, 9), (2.0, 1.25)), (100.0, 100.0, 100.0), SPEC, 0.0)
    assert str(raised.value) == (
        "the body is too small to find landmarks in: its silhouette spans 6 x 5 mm (left-right x superior-inferior), "
        "less than 7.2 mm across, in a field the model sees as 144 x 144 mm. Check that the volume holds the anatomy, "
        "its voxel spacing (mm) and the threshold (0.5, --threshold).")


def test_check_body_accepts_exactly_the_minimum_size_and_refuses_less():
    """100 x 100 pixels of 2 mm: at least 10 mm (5% of 200 mm), for the voxel grid and the silhouette alike."""
    spec = CanvasSpec(height=100, width=100, pixel_spacing_mm=2.0)
    five_by_five = _projected(slice(7, 12), slice(5, 10), (2.0, 2.0))  # 10 x 10 mm
    check_body(five_by_five, (10.0, 50.0, 50.0), spec, 0.0)
    with pytest.raises(InputError, match="slab too thin.* 9.99 x 50 x 50 mm, less than 10 mm"):
        check_body(five_by_five, (9.99, 50.0, 50.0), spec, 0.0)
    for columns, rows in ((slice(7, 11), slice(5, 10)), (slice(7, 12), slice(5, 9))):  # one pixel less either way
        with pytest.raises(InputError, match="too small"):
            check_body(_projected(columns, rows, (2.0, 2.0)), (50.0, 50.0, 50.0), spec, 0.0)
