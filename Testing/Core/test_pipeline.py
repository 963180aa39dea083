"""Detection path (projection -> canvas -> network -> RAS) with an analytic model, in every orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analytic_model import SPEC, save_centroid_model

from LandmarkDetectorLib.errors import Cancelled, InputError
from LandmarkDetectorLib.model import ModelMetadata, load_model, save_model
from LandmarkDetectorLib.pipeline import detect_landmarks, landmark_found
from LandmarkDetectorLib.projection import ProjectionConfig

from phantoms import make_ijk_to_ras, rotation, signed_permutations, spheres_volume

CENTRE_RAS = np.array([12.0, -7.0, 20.0])
RADIUS_MM = 25.0
DIRECTIONS = [signed_permutations()[i] for i in (0, 7, 21, 46)] + [rotation((1, 2, 0.5), 30),
                                                                   rotation((0, 1, 1), 60) @ np.diag([1.0, -1, 1])]


@pytest.fixture(scope="module")
def centroid_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "centroid.pt"
    save_centroid_model(path)
    return load_model(path)


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

    def detect(offset_px: float):
        path = tmp_path / f"below{offset_px}.pt"
        save_model(BelowModel(offset_px), ModelMetadata(name="below", landmarks=("Bottom",), canvas=SPEC,
                                                        projection=ProjectionConfig(table_removal_mm=0.0)), path)
        return detect_landmarks(cut, cut_ijk_to_ras, load_model(path))

    probe = detect(0.0)
    lowest_row_s = probe.points_ras[0, 2]
    rows_to_edge = (lowest_row_s - edge_s) / SPEC.pixel_spacing_mm  # canvas rows grow towards inferior
    just_past = detect(rows_to_edge + 0.4)
    assert just_past.found.tolist() == [True]
    assert just_past.points_ras[0, 2] == pytest.approx(edge_s, abs=1e-6)
    assert detect(rows_to_edge + 0.6).found.tolist() == [False]
