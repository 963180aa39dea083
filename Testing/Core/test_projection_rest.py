"""Single rays, exactly: which rays are body (the table-removal length, a lone voxel at the back, a surface gap
longer than the ray, rays longer than 65,535 voxels), the depth image's type, the body depth statistics of an image
(flat, spread, empty), the configuration's checks of its lengths, and the range auto_threshold runs Otsu's method
on: the details mutation testing found unchecked (Testing/MUTANTS.md, run 7)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from LandmarkDetectorLib.errors import InputError
from LandmarkDetectorLib.projection import ProjectedImage, ProjectionConfig, auto_threshold, project_volume


def ap_ray(front_to_back, step_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A volume of one anterior-to-posterior ray (the "ap" view's ray) holding ``front_to_back``, and its matrix.

    The j axis runs posterior -> anterior, so the ray reads it backwards (the front weights' reversed case)."""
    values = np.asarray(front_to_back, dtype=np.float32)[::-1]
    return values.reshape(1, -1, 1), np.diag([1.0, step_mm, 1.0, 1.0])


def project_ray(front_to_back, step_mm: float = 1.0, **config) -> ProjectedImage:
    volume, ijk_to_ras = ap_ray(front_to_back, step_mm)
    settings = {"threshold": 0.0, "table_removal_mm": 0.0, "surface_min_mm": 0.0} | config
    return project_volume(volume, ijk_to_ras, ProjectionConfig(**settings))


@pytest.mark.parametrize(("n_body", "table_removal_mm", "body"), [
    (15, 15.0, True),  # exactly as long as the table removal length
    (1, 1.0 + 1e-9, True),  # 1e-9 mm short: within the tolerance for rounding
    (14, 14.5, False),  # half a voxel short
])
def test_a_ray_is_body_from_the_table_removal_length_on_within_a_nanometre(n_body, table_removal_mm, body):
    image = project_ray([0.0] * 3 + [100.0] * n_body + [0.0] * 2, table_removal_mm=table_removal_mm)
    assert image.silhouette.tolist() == [[body]]
    if body:
        assert image.depth_mm[0, 0] == pytest.approx(2.5)  # half a voxel in front of the fourth voxel centre


def test_a_single_body_voxel_at_the_back_of_the_ray_is_body():
    """Its front weight is 1, the smallest a body voxel has."""
    image = project_ray([0.0, 0.0, 0.0, 100.0], step_mm=2.0)
    assert image.silhouette.tolist() == [[True]]
    assert image.depth_mm[0, 0] == pytest.approx(5.0)


def test_depth_image_is_float32_with_nan_outside_the_body():
    image = project_ray([0.0, 100.0, 100.0])
    empty = project_ray([0.0, 0.0, 0.0])
    assert image.depth_mm.dtype == np.float32 and empty.depth_mm.dtype == np.float32
    assert np.isnan(empty.depth_mm).all()


@pytest.mark.parametrize("surface_min_mm", [3.0, 4.0, 50.0])
def test_surface_gap_as_long_as_the_ray_or_longer_finds_no_surface(surface_min_mm):
    image = project_ray([100.0, 100.0, 100.0], surface_min_mm=surface_min_mm)
    assert not image.silhouette.any()
    assert image.depth_mean_mm == 0.0 and image.depth_std_mm == 1.0


def test_rays_longer_than_65535_voxels_keep_their_depth_and_length():
    n = 70_000
    image = project_ray([100.0] * n, step_mm=0.01, table_removal_mm=0.01 * n - 1e-6)
    assert image.silhouette.tolist() == [[True]]
    assert image.depth_mm[0, 0] == pytest.approx(-0.005)  # half a step in front of the first voxel centre
    # Body only at the back: the count (2) and the front weight are small, the ray index is not.
    back = project_ray([0.0] * (n - 2) + [100.0] * 2, step_mm=0.01)
    assert back.depth_mm[0, 0] == pytest.approx(0.01 * (n - 2.5), rel=1e-6)


def image_with_depths(depths) -> ProjectedImage:
    depth = np.array([depths], dtype=np.float32)
    return ProjectedImage(silhouette=np.isfinite(depth), depth_mm=depth, pixel_to_ras=np.eye(4), threshold=0.0,
                          view="ap")


def test_flat_surface_has_unit_depth_scale():
    image = image_with_depths([40.0, 40.0, 40.0, np.nan])
    assert image.depth_mean_mm == 40.0 and image.depth_std_mm == 1.0
    np.testing.assert_array_equal(image.normalized_depth(), [[0.0, 0.0, 0.0, 3.0]])


def test_depth_spread_under_one_millimetre_is_kept():
    image = image_with_depths([1.0, 2.0, np.nan])
    assert image.depth_mean_mm == 1.5 and image.depth_std_mm == 0.5
    np.testing.assert_array_equal(image.normalized_depth(), [[-1.0, 1.0, 3.0]])


def test_image_without_body_has_zero_mean_and_unit_scale_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = image_with_depths([np.nan, np.nan])
    assert image.depth_mean_mm == 0.0 and image.depth_std_mm == 1.0


@pytest.mark.parametrize("name", ["table_removal_mm", "surface_min_mm"])
@pytest.mark.parametrize("value", [-1.0, -1e-9, np.inf, np.nan])
def test_config_refuses_negative_or_non_finite_lengths(name, value):
    with pytest.raises(InputError, match=rf"^{name} must be a number >= 0, got {value}\.$"):
        ProjectionConfig(**{name: value})
    ProjectionConfig(**{name: 0.0})


def test_auto_threshold_of_a_body_in_under_half_a_percent_of_the_voxels_splits_air_from_body():
    """The 0.5th and 99.5th percentiles are both air (0): Otsu's method then runs on the whole range."""
    volume = np.array([0.0] * 1000 + [100.0] * 3).reshape(-1, 1, 1)
    assert 0.0 < auto_threshold(volume) < 100.0


def test_auto_threshold_runs_otsu_between_the_percentiles_inclusive():
    """An outlier beyond the 99.5th percentile is left out; values equal to either percentile are kept."""
    volume = np.array([0.0] * 500 + [100.0] * 500 + [1e6]).reshape(-1, 1, 1)
    assert auto_threshold(volume) == pytest.approx(50.0, abs=1.0)
