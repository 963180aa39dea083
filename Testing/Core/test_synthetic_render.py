"""The analytic renderer gives what project_volume gives for a voxelized version of the same anatomy.

Bounds: silhouette IoU > 0.99 (measured 0.999+). Depth: the projection reports the air/body boundary half a step in
front of the first voxel inside, the renderer the continuous surface, so they differ by -0.5 to +0.5 voxel,
uniformly: |median difference| < 0.15 voxel (measured ~0), 95% of body pixels within 0.55 voxel (measured 0.48).
"""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkDetectorLib.projection import ProjectionConfig, project_volume
from LandmarkDetectorLib.synthetic import body, hand
from LandmarkDetectorLib.synthetic.anatomy import Anatomy, Tissue
from LandmarkDetectorLib.synthetic.render import frame_grid, grid_at_spacing, render, render_batch
from LandmarkDetectorLib.synthetic.scan import PATIENT_POSITIONS, grid_covering, voxelize

ORIENTATIONS = {
    "ras-axis-aligned": np.eye(3),
    "lps-feet-first-flipped": PATIENT_POSITIONS["FFS"] * np.array([-1.0, 1.0, 1.0]) @ np.diag([1.0, 1.0, 1.0]),
}


def _body(seed: int) -> Anatomy:
    rng = np.random.default_rng([seed, 3])
    return body.build_body(body.sample_body(rng), body.sample_pose(rng), inner=False)


def _hand(seed: int) -> Anatomy:
    return hand.build_hand(hand.sample_hand(np.random.default_rng([seed, 3])))


def _compare(anatomy: Anatomy, direction: np.ndarray, spacing_mm: float) -> tuple[float, float, float]:
    """IoU, median and 95th percentile of (projected - rendered) depth in voxels, on the projection's grid.

    The projection settings are the bundled models': CT bodies skip layers thinner than 5 mm in front of the
    surface (table plates), MR hands take the first voxel.
    """
    low, high = anatomy.skin.bounds_ras()
    ijk_to_ras, shape_kji = grid_covering(direction, np.full(3, spacing_mm), low - 10.0, high + 10.0)
    labels = voxelize([Tissue("skin", anatomy.skin, np.zeros(len(anatomy.skin)))], shape_kji, ijk_to_ras)
    surface_min_mm = 5.0 if anatomy.kind == "body" else 0.0
    projected = project_volume(labels, ijk_to_ras, ProjectionConfig(threshold=0.5, table_removal_mm=0.0,
                                                                     surface_min_mm=surface_min_mm))
    rendered = render(anatomy.skin, projected.pixel_to_ras, projected.shape)
    a, b = projected.silhouette, rendered.silhouette
    both = a & b
    diff = (projected.depth_mm[both] - rendered.depth_mm[both]) / spacing_mm
    return float(both.sum() / (a | b).sum()), float(np.median(diff)), float(np.percentile(np.abs(diff), 95))


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_body_render_matches_voxelized_projection(orientation: str) -> None:
    iou, median, p95 = _compare(_body(1), ORIENTATIONS[orientation], 4.0)
    assert iou > 0.99
    assert abs(median) < 0.15
    assert p95 < 0.55


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_hand_render_matches_voxelized_projection(orientation: str) -> None:
    iou, median, p95 = _compare(_hand(2), ORIENTATIONS[orientation], 1.0)
    assert iou > 0.99
    assert abs(median) < 0.15
    assert p95 < 0.55


def test_batch_render_equals_single_renders() -> None:
    anatomies = [_body(seed) for seed in range(4)]
    grids = np.stack([frame_grid(a.skin, (160, 76)) for a in anatomies])
    batch = render_batch([a.skin for a in anatomies], grids, (160, 76))
    for anatomy, grid, depth in zip(anatomies, grids, batch, strict=True):
        single = render(anatomy.skin, grid, (160, 76))
        assert np.array_equal(np.isfinite(depth), single.silhouette)
        np.testing.assert_allclose(depth[single.silhouette], single.depth_mm[single.silhouette], atol=1e-3)


def test_frame_grid_frames_the_whole_anatomy() -> None:
    anatomy = _body(5)
    image = render(anatomy.skin, frame_grid(anatomy.skin, (160, 76), margin=0.05), (160, 76))
    rows = np.flatnonzero(image.silhouette.any(axis=1))
    cols = np.flatnonzero(image.silhouette.any(axis=0))
    assert rows[0] > 0 and rows[-1] < 159 and cols[0] > 0 and cols[-1] < 75  # nothing cut off
    assert rows[-1] - rows[0] > 0.85 * 160 or cols[-1] - cols[0] > 0.85 * 76  # and it fills the image
    # The front plane touches the body's nearest point, which a pixel's ray may miss by less than a pixel.
    assert 0.0 <= np.nanmin(image.depth_mm) < image.pixel_spacing_mm[0]
    uvd = image.ras_to_uvd(anatomy.landmark_array())
    assert np.all((uvd[:, 0] >= 0) & (uvd[:, 0] <= 75) & (uvd[:, 1] >= 0) & (uvd[:, 1] <= 159))


def test_grid_at_spacing_and_landmark_depths() -> None:
    anatomy = _hand(4)
    grid, shape_vu = grid_at_spacing(anatomy.skin, 1.0)
    image = render(anatomy.skin, grid, shape_vu)
    assert image.pixel_spacing_mm == pytest.approx((1.0, 1.0))
    # A fingertip on the skin, seen from the front, lies at or behind the front surface of its pixel.
    for name, (u, v, d) in zip(anatomy.landmark_names, image.ras_to_uvd(anatomy.landmark_array()), strict=True):
        window = image.depth_mm[int(round(v)) - 1:int(round(v)) + 2, int(round(u)) - 1:int(round(u)) + 2]
        assert np.isfinite(window).any(), name
        assert d >= np.nanmin(window) - 1.0, name
