"""The automatic body/air threshold (CT by its air near -1000 HU, Otsu otherwise), the trilinear sampler of oblique
volumes, the choice between slicing and copying the rays of a coarse projection, integer thresholds, and depth
normalization: the details mutation testing found unchecked (Testing/MUTANTS.md, run 7)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from LandmarkDetectorLib.errors import InputError
from LandmarkDetectorLib.projection import (
    ProjectedImage,
    ProjectionConfig,
    _trilinear,
    auto_threshold,
    otsu_threshold,
    project_volume,
)

FLAT = ProjectionConfig(table_removal_mm=0, surface_min_mm=0)  # every voxel above the threshold is body


def column(values) -> np.ndarray:
    """A 3D volume (N, 1, 1) holding ``values``: auto_threshold's sample is then exactly these values."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)


def lattice_volume(shape_kji: tuple[int, int, int], step: int) -> np.ndarray:
    """Air (-1000) except at the voxels whose indices are all multiples of ``step``: body of 100 and 300 alternately.

    A subsample of every ``step``-th voxel from voxel 0 sees only body; any other stride sees air (or a single
    voxel)."""
    volume = np.full(shape_kji, -1000, dtype=np.int16)
    on = volume[::step, ::step, ::step]
    volume[::step, ::step, ::step] = np.where(np.arange(on.size).reshape(on.shape) % 2, 300, 100)
    return volume


# --- auto_threshold -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape_kji, max_samples, step", [
    ((75, 75, 150), None, 2),  # 843,750 voxels: cube root of 3.375 is exactly 1.5, rounded to 2 (the default 250,000)
    ((9, 9, 9), 27, 3),  # 729 / 27 = 27: every third voxel
])
def test_auto_threshold_samples_every_nth_voxel_n_the_rounded_cube_root_of_size_over_max_samples(
        shape_kji, max_samples, step):
    volume = lattice_volume(shape_kji, step)
    threshold = auto_threshold(volume) if max_samples is None else auto_threshold(volume, max_samples=max_samples)
    assert 100 < threshold < 300  # only the body was sampled: Otsu between its two values, not CT's -500


def test_auto_threshold_reads_every_voxel_of_a_small_volume():
    volume = lattice_volume((6, 6, 6), 2)  # 7/8 of it air, but none of it at even indices
    assert auto_threshold(volume) == -500.0


@pytest.mark.parametrize("values, ct", [
    # 201 samples: the 0.5th percentile is the second smallest value; at -900 (inclusive) it is a CT.
    (np.r_[-1000, -900, np.linspace(0, 600, 199)], True),
    # 301 samples: halfway between the second and third smallest, -1000 and -800: -900 again, a CT.
    (np.r_[-1000, -1000, -800, np.linspace(0, 600, 298)], True),
    # ... -1000 and -700: -850, not a CT though two samples are air (the percentile's lower rank plus one).
    (np.r_[-1000, -1000, -700, np.linspace(0, 600, 298)], False),
    # 401 samples, two air: the 0.5th percentile lies between the third and fourth smallest, both body.
    (np.r_[-1000, -1000, np.linspace(0, 600, 399)], False),
], ids=["201-at-900", "301-interpolated-at-900", "301-interpolated-at-850", "401-two-air"])
def test_auto_threshold_takes_a_ct_by_its_half_percentile_at_most_minus_900(values, ct):
    assert (np.percentile(values, 0.5) <= -900) == ct  # the rule, as numpy computes it
    threshold = auto_threshold(column(values))
    if ct:
        assert threshold == -500.0
    else:
        assert 0 < threshold < 600  # Otsu within the body's values


def test_auto_threshold_does_not_depend_on_the_voxel_type():
    values = np.r_[np.full(500, 100.0), np.full(300, 1000.0), np.linspace(90, 1010, 200)]  # exact in float16
    half = values.reshape(10, 10, 10).astype(np.float16)
    assert auto_threshold(half) == auto_threshold(half.astype(np.float64))


def test_auto_threshold_tells_no_finite_voxel_from_a_single_one():
    with pytest.raises(InputError, match="no finite voxel"):
        auto_threshold(np.full((2, 2, 2), np.nan))
    one = np.full((2, 2, 2), np.nan)
    one[1, 0, 1] = 5.0
    with pytest.raises(InputError, match="constant"):
        auto_threshold(one)


# --- otsu_threshold -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, expected", [
    # 256 bins of 1 over [0, 256]. Splits after bins 0..9 separate {0} | {10, 256}: between-class variance
    # 1 * 2 * (0.5 - 133)^2 = 35,112.5; after bins 10..254, {0, 10} | {256}: 2 * 1 * (5.5 - 255.5)^2 = 125,000.
    # The threshold is the mean of the upper edges of the best plateau, 11..255: 133.
    ([0.0, 10.0, 256.0], 133.0),
    # Mirrored: {0} | {246, 256} (2 * 250.5^2) beats {0, 246} | {256} (2 * 132^2): the mean of edges 1..246.
    ([0.0, 246.0, 256.0], 123.5),
])
def test_otsu_threshold_is_the_middle_of_the_best_split_over_256_bins(values, expected):
    assert otsu_threshold(np.array(values)) == expected


@pytest.mark.parametrize("shift", [-1000.0, 1000.0])
def test_otsu_threshold_moves_with_the_values(shift):
    for values, expected in (([0.0, 10.0, 256.0], 133.0), ([0.0, 246.0, 256.0], 123.5)):
        assert otsu_threshold(np.array(values) + shift) == expected + shift


def test_otsu_threshold_of_a_constant_sample_is_its_value():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice"
        assert otsu_threshold(np.full(5, 7.0)) == pytest.approx(7.0, abs=1e-9)


# --- _trilinear -----------------------------------------------------------------------------------------------------

def integer_volume(shape_kji: tuple[int, int, int]) -> np.ndarray:
    """float32 voxels 0, 1000, 2000, ... in raveled order (exact, and far apart)."""
    return (np.arange(int(np.prod(shape_kji))) * 1000.0).astype(np.float32).reshape(shape_kji)


def sample(volume: np.ndarray, ijk) -> np.ndarray:
    return _trilinear(volume.reshape(-1), volume.shape, [np.float32(np.atleast_1d(c)) for c in ijk])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_trilinear_within_the_tolerance_beyond_the_first_or_last_voxel_gives_that_voxel(axis):
    volume = integer_volume((3, 4, 5))
    sizes = volume.shape[::-1]  # i, j, k
    for position, voxel in ((-5e-5, 0), (sizes[axis] - 1 + 5e-5, sizes[axis] - 1)):
        ijk = [1.0, 2.0, 1.0]
        ijk[axis] = position
        index = [1, 2, 1]
        index[axis] = voxel
        assert sample(volume, ijk)[0] == volume[index[2], index[1], index[0]]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_trilinear_outside_along_any_one_axis_gives_minus_infinity(axis):
    volume = integer_volume((3, 4, 5))
    sizes = volume.shape[::-1]
    for position in (-0.01, sizes[axis] - 1 + 0.01):
        ijk = [1.5, 1.5, 1.0]
        ijk[axis] = position
        assert sample(volume, ijk)[0] == -np.inf


@pytest.mark.parametrize("shape_kji", [(1, 4, 5), (3, 1, 5), (3, 4, 1)])
def test_trilinear_samples_a_volume_one_voxel_thick(shape_kji):
    volume = integer_volume(shape_kji)
    k, j, i = (c.ravel().astype(np.float32) for c in np.indices(shape_kji))
    np.testing.assert_array_equal(sample(volume, [i, j, k]), volume.ravel())


@pytest.mark.parametrize("dtype", [np.int16, np.float64])
def test_trilinear_samples_are_float32_whatever_the_voxel_type(dtype):
    volume = integer_volume((3, 4, 5)).astype(dtype)
    values = sample(volume, [[0.5, 3.25], [1.5, 2.0], [0.0, 1.75]])
    assert values.dtype == np.float32


@pytest.mark.parametrize("infinite", [
    [(0, 0, 0), (0, 0, 1)],  # two neighbours along i: inf - inf in the first interpolation
    [(k, j, 1) for k in (0, 1) for j in (0, 1)],  # the i = 1 face: along i gives inf, then inf - inf along j
    [(k, 1, 1) for k in (0, 1)],  # an edge along k: inf after i and j, then inf - inf along k
], ids=["along-i", "along-j", "along-k"])
def test_trilinear_beside_infinite_voxels_gives_non_finite_values_without_warnings(infinite):
    volume = np.ones((2, 2, 2), dtype=np.float32)
    for k, j, i in infinite:
        volume[k, j, i] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered"
        value = sample(volume, [0.5, 0.5, 0.5])[0]
    assert not np.isfinite(value)


# --- slicing or copying the rays (_evenly_spaced) ---------------------------------------------------------------------

def test_projection_of_a_volume_one_slice_thick_and_two_voxels_wide():
    volume = np.zeros((1, 5, 2), dtype=np.int16)  # k, j (the ray, A -> P), i
    volume[0, 2, 0] = 100  # i = 0 is the patient's right: column u = 1
    image = project_volume(volume, np.eye(4), ProjectionConfig(threshold=50, table_removal_mm=0, surface_min_mm=0))
    np.testing.assert_array_equal(image.silhouette, [[False, True]])
    assert image.depth_mm[0, 1] == 1.5  # the front plane at j = 4; the surface half a voxel before j = 2


def test_pixels_much_finer_than_the_slices_repeat_them_in_whole_slabs():
    # 2 slices 20 mm apart seen at 1 mm pixels: rows 0..10 are the upper slice, 11..20 the lower one. 65,536 voxels
    # along the ray make slabs of 8 rows, so the first slab repeats one slice 8 times (no slice step).
    volume = np.zeros((2, 65536, 1), dtype=np.uint8)
    volume[1, 100:200, 0] = 100
    ijk_to_ras = np.diag([1.0, 1.0, 20.0, 1.0])
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=50, table_removal_mm=0, surface_min_mm=0,
                                                                pixel_spacing_mm=1.0))
    assert image.shape == (21, 1)
    np.testing.assert_array_equal(image.silhouette[:, 0], [True] * 11 + [False] * 10)
    np.testing.assert_array_equal(image.depth_mm[:11, 0], 65535 - 199 - 0.5)


# --- _threshold_for_dtype -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [-2 ** 63, 2 ** 62], ids=["int64-minimum", "2-to-the-62"])
def test_int64_voxels_one_above_the_threshold_are_body_beyond_float64_precision(threshold):
    volume = np.empty((2, 3, 2), dtype=np.int64)
    volume[:, :, 0] = threshold + 1  # float64 cannot tell these two apart
    volume[:, :, 1] = threshold
    image = project_volume(volume, np.eye(4), ProjectionConfig(threshold=float(threshold), table_removal_mm=0,
                                                               surface_min_mm=0))
    np.testing.assert_array_equal(image.silhouette, [[False, True], [False, True]])


# --- depth normalization --------------------------------------------------------------------------------------------

def small_image() -> ProjectedImage:
    depth = np.array([[10.1, 20.7], [33.3, np.nan]], dtype=np.float32)
    return ProjectedImage(silhouette=np.isfinite(depth), depth_mm=depth, pixel_to_ras=np.eye(4), threshold=0.0,
                          view="ap")


def test_depth_normalization_is_float64_even_for_float32_depths():
    image = small_image()
    depth = np.float32([12.3, 45.6])
    normalized = image.normalize_depth(depth)
    assert normalized.dtype == np.float64
    np.testing.assert_array_equal(normalized, (depth.astype(np.float64) - image.depth_mean_mm) / image.depth_std_mm)
    back = image.denormalize_depth(np.float32([0.3, -1.7]))
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, np.float32([0.3, -1.7]).astype(np.float64) * image.depth_std_mm
                                  + image.depth_mean_mm)


def test_normalized_depth_image_is_float32():
    image = small_image()
    norm = image.normalized_depth()
    assert norm.dtype == np.float32
    assert norm[1, 1] == 3.0
