"""Projection geometry: spheres with known RAS centres under every orientation, table removal, depth statistics."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkDetectorLib.errors import Cancelled, InputError
from LandmarkDetectorLib.projection import (
    ProjectionConfig,
    _nearest,
    _trilinear,
    auto_threshold,
    project_volume,
    view_pixel_to_ras,
)

from phantoms import AIR_HU, add_box, make_ijk_to_ras, rotation, signed_permutations, spheres_volume, voxel_centres_ras

RADIUS_MM = 10.0
CENTRES_RAS = np.array([[-25.0, 10.0, 20.0], [20.0, -15.0, -5.0], [5.0, 20.0, -30.0]])
SPACING = (1.1, 1.7, 2.6)  # i, j, k: anisotropic
SHAPE_KJI = (39, 59, 91)  # odd sizes; about 100 mm along every axis
PERMUTATIONS = signed_permutations()
OBLIQUE = [rotation((1, 1, 0), 25), rotation((0.3, -1, 0.5), 40), rotation((0, 0, 1), 33) @ rotation((1, 0, 0), 17)]


def sphere_phantom(direction):
    ijk_to_ras = make_ijk_to_ras(direction, SPACING, SHAPE_KJI, (3.0, -2.0, 1.5))
    return spheres_volume(SHAPE_KJI, ijk_to_ras, CENTRES_RAS, RADIUS_MM), ijk_to_ras


def measured_centre_uvd(image, centre_ras):
    """Sphere centre from its disk: silhouette centroid, and surface depth plus the sphere's sagitta."""
    su, sv = image.pixel_spacing_mm
    u0, v0, _ = image.ras_to_uvd(centre_ras[None])[0]
    vv, uu = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    near = (((uu - u0) * su) ** 2 + ((vv - v0) * sv) ** 2 <= (RADIUS_MM + 2 * max(su, sv)) ** 2) & image.silhouette
    u_c, v_c = uu[near].mean(), vv[near].mean()
    rho2 = ((uu - u_c) * su) ** 2 + ((vv - v_c) * sv) ** 2
    core = near & (rho2 <= (0.7 * RADIUS_MM) ** 2)
    depth_centre = image.depth_mm[core] + np.sqrt(RADIUS_MM ** 2 - rho2[core])
    return np.array([u_c, v_c, depth_centre.mean()])


def check_spheres(image, depth_step_mm):
    for centre in CENTRES_RAS:
        expected = image.ras_to_uvd(centre[None])[0]
        got = measured_centre_uvd(image, centre)
        assert abs(got[0] - expected[0]) <= 0.5, (got, expected)
        assert abs(got[1] - expected[1]) <= 0.5, (got, expected)
        assert abs(got[2] - expected[2]) <= 0.5 * depth_step_mm + 0.05, (got, expected)


@pytest.mark.parametrize("view", ["ap", "lr"])
@pytest.mark.parametrize("index", range(len(PERMUTATIONS)))
def test_axis_aligned_spheres_map_back_to_their_centres(index, view):
    direction = PERMUTATIONS[index]
    volume, ijk_to_ras = sphere_phantom(direction)
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(table_removal_mm=0, view=view))
    ray_ras = {"ap": np.array([0, -1, 0]), "lr": np.array([1, 0, 0])}[view]
    step = float(np.abs(ijk_to_ras[:3, :3].T @ ray_ras).max())  # spacing of the voxel axis along the ray
    check_spheres(image, step)
    # Axis-aligned volumes are not interpolated: pixel spacing equals voxel spacing of the in-plane axes.
    assert sorted(image.pixel_spacing_mm + (step,)) == pytest.approx(sorted(SPACING))


@pytest.mark.parametrize("view", ["ap", "lr"])
@pytest.mark.parametrize("index", range(len(OBLIQUE)))
def test_oblique_spheres_map_back_to_their_centres(index, view):
    volume, ijk_to_ras = sphere_phantom(OBLIQUE[index])
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(table_removal_mm=0, view=view))
    assert image.pixel_spacing_mm == pytest.approx((min(SPACING), min(SPACING)))
    check_spheres(image, min(SPACING))


def test_requested_pixel_spacing_keeps_geometry():
    volume, ijk_to_ras = sphere_phantom(PERMUTATIONS[5])
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(table_removal_mm=0, pixel_spacing_mm=2.0))
    assert image.pixel_spacing_mm == pytest.approx((2.0, 2.0))
    step = float(np.abs(ijk_to_ras[:3, :3].T @ np.array([0, -1, 0])).max())
    check_spheres(image, step)


def nearest_resampled(image, spacing_mm):
    """Reference: a full-resolution projection resampled to square pixels by nearest voxel rows and columns."""
    su, sv = image.pixel_spacing_mm
    h, w = image.shape
    cols = np.clip(np.rint(np.arange(int((w - 1) * su / spacing_mm + 1e-9) + 1) * spacing_mm / su), 0, w - 1)
    rows = np.clip(np.rint(np.arange(int((h - 1) * sv / spacing_mm + 1e-9) + 1) * spacing_mm / sv), 0, h - 1)
    pick = np.ix_(rows.astype(int), cols.astype(int))
    return image.silhouette[pick], image.depth_mm[pick]


@pytest.mark.parametrize("view", ["ap", "lr"])
@pytest.mark.parametrize("index", range(0, len(PERMUTATIONS), 5))
@pytest.mark.parametrize("spacing_mm", [0.7, 2.0, 5.3])
def test_coarse_aligned_projection_reads_only_its_rays(index, view, spacing_mm):
    """Projecting straight at a pixel size equals projecting at full resolution and taking the nearest rays."""
    volume, ijk_to_ras = sphere_phantom(PERMUTATIONS[index])
    add_box(volume, ijk_to_ras, (-60, -60, -60), (60, -40, 60), 300)  # a plate, so table removal has work
    config = ProjectionConfig(table_removal_mm=12.0, view=view)
    full = project_volume(volume, ijk_to_ras, config)
    coarse = project_volume(volume, ijk_to_ras, ProjectionConfig(table_removal_mm=12.0, view=view,
                                                                 pixel_spacing_mm=spacing_mm))
    silhouette, depth = nearest_resampled(full, spacing_mm)
    np.testing.assert_array_equal(coarse.silhouette, silhouette)
    np.testing.assert_array_equal(coarse.depth_mm, depth)
    np.testing.assert_allclose(coarse.pixel_to_ras[:, 2:], full.pixel_to_ras[:, 2:])  # same origin and rays
    np.testing.assert_allclose(coarse.pixel_spacing_mm, (spacing_mm, spacing_mm))


def test_coarse_pixels_of_an_oblique_volume_keep_fine_depth():
    volume, ijk_to_ras = sphere_phantom(OBLIQUE[0])
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(table_removal_mm=0, pixel_spacing_mm=2.5))
    assert image.pixel_spacing_mm == pytest.approx((2.5, 2.5))
    check_spheres(image, min(SPACING))


def test_uvd_ras_round_trip_and_view_axes():
    volume, ijk_to_ras = sphere_phantom(OBLIQUE[1])
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(table_removal_mm=0))
    uvd = np.random.default_rng(0).uniform(-5, 50, size=(20, 3))
    np.testing.assert_allclose(image.ras_to_uvd(image.uvd_to_ras(uvd)), uvd, atol=1e-9)
    # AP view: +u is the patient's left (-R), +v is inferior (-S), +d is posterior (-A).
    m = view_pixel_to_ras("ap", (0, 0, 0), (1.0, 1.0))
    np.testing.assert_array_equal(m[:3, :3], [[-1, 0, 0], [0, 0, -1], [0, -1, 0]])
    # LR view: rays from the patient's left to right (+R), +u posterior.
    m = view_pixel_to_ras("lr", (0, 0, 0), (1.0, 1.0))
    np.testing.assert_array_equal(m[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]])


def body_on_table(direction):
    """A 60 mm thick box-shaped 'body' lying on two 3 mm table plates below it (posterior, supine)."""
    spacing = (2.0, 1.5, 2.5)
    shape_kji = (41, 81, 71)
    ijk_to_ras = make_ijk_to_ras(direction, spacing, shape_kji, (0.0, 0.0, 0.0))
    volume = np.full(shape_kji, AIR_HU, dtype=np.int16)
    add_box(volume, ijk_to_ras, (-30, -20, -30), (30, 40, 30), 40)  # body: R -30..30, A -20..40, S -30..30
    add_box(volume, ijk_to_ras, (-200, -26, -200), (200, -23, 200), 300)  # plate just below the body
    add_box(volume, ijk_to_ras, (-200, -46, -200), (200, -43, 200), 300)  # second plate
    return volume, ijk_to_ras


@pytest.mark.parametrize("index", [0, 17, 40])
def test_table_is_removed_and_body_kept(index):
    volume, ijk_to_ras = body_on_table(PERMUTATIONS[index])
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=-500, table_removal_mm=15))
    body_only = volume.copy()
    body_only[volume == 300] = AIR_HU
    expected = project_volume(body_only, ijk_to_ras, ProjectionConfig(threshold=-500, table_removal_mm=0))
    np.testing.assert_array_equal(image.silhouette, expected.silhouette)
    assert 0.15 < image.silhouette.mean() < 0.8  # the plates span the whole field, the body does not
    # The depth is the distance from the front plane to the body surface, half a voxel in front of the most
    # anterior body voxel, whatever the orientation.
    front_a = image.uvd_to_ras(np.array([[0, 0, 0]]))[0, 1]
    body_front_a = voxel_centres_ras(volume.shape, ijk_to_ras)[volume == 40][:, 1].max()
    step_a = float(np.abs(ijk_to_ras[1, :3]).max())
    np.testing.assert_allclose(image.depth_mm[image.silhouette], front_a - body_front_a - step_a / 2, atol=1e-4)
    without_removal = project_volume(volume, ijk_to_ras,
                                     ProjectionConfig(threshold=-500, table_removal_mm=0, surface_min_mm=0))
    assert without_removal.silhouette.all()


@pytest.mark.parametrize("index", [0, 17, 40])
def test_table_in_front_of_a_prone_patient_is_not_the_surface(index):
    spacing = (2.0, 1.5, 2.5)
    shape_kji = (41, 81, 71)
    ijk_to_ras = make_ijk_to_ras(PERMUTATIONS[index], spacing, shape_kji, (0.0, 0.0, 0.0))
    volume = np.full(shape_kji, AIR_HU, dtype=np.int16)
    add_box(volume, ijk_to_ras, (-30, -40, -30), (30, 30, 30), 40)  # body: A up to 30 mm
    add_box(volume, ijk_to_ras, (-200, 36, -200), (200, 39, 200), 300)  # plate in front, over a mattress gap
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=-500))
    front_a = image.uvd_to_ras(np.array([[0, 0, 0]]))[0, 1]
    body_front_a = voxel_centres_ras(volume.shape, ijk_to_ras)[volume == 40][:, 1].max()
    step_a = float(np.abs(ijk_to_ras[1, :3]).max())
    np.testing.assert_allclose(image.depth_mm[image.silhouette], front_a - body_front_a - step_a / 2, atol=1e-4)
    naive = project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=-500, surface_min_mm=0))
    assert np.nanmax(naive.depth_mm) < front_a - body_front_a - 5  # the plate, not the body


def test_depth_normalization_matches_the_paper():
    volume, ijk_to_ras = sphere_phantom(PERMUTATIONS[0])
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(table_removal_mm=0))
    norm = image.normalized_depth()
    body = norm[image.silhouette]
    assert body.mean() == pytest.approx(0.0, abs=1e-5)
    assert body.std() == pytest.approx(1.0, abs=1e-5)
    assert np.all(norm[~image.silhouette] == 3.0)  # Riegler et al.: background depth 3
    assert np.all(np.isnan(image.depth_mm[~image.silhouette]))
    d = np.array([12.5, 40.0])
    np.testing.assert_allclose(image.denormalize_depth(image.normalize_depth(d)), d)


def test_auto_threshold_ct_and_mr():
    volume, _ = sphere_phantom(PERMUTATIONS[0])
    assert auto_threshold(volume) == -500.0
    # MR: no air near -1000; a body filling a good part of the field over a noisy dark background.
    rng = np.random.default_rng(1)
    k, j, i = np.indices(volume.shape)
    body = ((i - 45) / 35.0) ** 2 + ((j - 29) / 20.0) ** 2 + ((k - 19) / 15.0) ** 2 <= 1
    mr = np.where(body, 600.0, 20.0) + rng.normal(0, 15, volume.shape)
    t = auto_threshold(mr.astype(np.float32))
    assert 150 < t < 450
    with pytest.raises(InputError, match="constant"):
        auto_threshold(np.full((5, 6, 7), 3.0))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64,
                                   np.float16, np.float32, np.float64])
def test_every_pixel_type_gives_the_same_silhouette(dtype):
    volume, ijk_to_ras = sphere_phantom(PERMUTATIONS[3])
    binary = (volume > 0).astype(dtype) * 100
    image = project_volume(binary, ijk_to_ras, ProjectionConfig(threshold=50, table_removal_mm=0))
    reference = project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=-500, table_removal_mm=0))
    np.testing.assert_array_equal(image.silhouette, reference.silhouette)


@pytest.mark.parametrize("direction", [PERMUTATIONS[5], OBLIQUE[0]], ids=["aligned", "oblique"])
def test_non_finite_voxels_count_as_air(direction):
    volume, ijk_to_ras = sphere_phantom(direction)
    config = ProjectionConfig(threshold=-500, table_removal_mm=0)
    reference = project_volume(volume, ijk_to_ras, config)
    spoilt = volume.astype(np.float32)
    air = np.flatnonzero(volume.ravel() == AIR_HU)
    for value, picks in zip((np.nan, np.inf, -np.inf), np.array_split(np.random.default_rng(3).permutation(air), 300),
                            strict=False):
        spoilt.ravel()[picks] = value  # 1% of the air voxels in all
    image = project_volume(spoilt, ijk_to_ras, config)
    if direction is OBLIQUE[0]:  # resampling: a sample beside a non-finite voxel is air too, so edges may thin
        assert image.silhouette.sum() >= 0.97 * reference.silhouette.sum()
        assert not (image.silhouette & ~reference.silhouette).any()
    else:
        np.testing.assert_array_equal(image.silhouette, reference.silhouette)


def test_threshold_outside_integer_range():
    volume = np.zeros((5, 6, 7), dtype=np.uint8)
    volume[2, 3, 3] = 7
    image = project_volume(volume, np.eye(4), ProjectionConfig(threshold=-500, table_removal_mm=0))
    assert image.silhouette.all()
    image = project_volume(volume, np.eye(4), ProjectionConfig(threshold=300, table_removal_mm=0))
    assert not image.silhouette.any()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 5)), "must be 3D"),
    (np.zeros((2, 3, 4, 5)), "must be 3D"),
    (np.zeros((0, 3, 4)), "empty"),
    (np.zeros((3, 4, 5), dtype=complex), "real numbers"),
])
def test_bad_volumes_are_refused(bad, message):
    with pytest.raises(InputError, match=message):
        project_volume(bad, np.eye(4), ProjectionConfig(threshold=0))


@pytest.mark.parametrize("matrix, message", [
    (np.eye(3), "4x4"),
    (np.diag([1.0, 0.0, 1.0, 1.0]), "positive"),
    (np.diag([1.0, np.nan, 1.0, 1.0]), "non-finite"),
    (np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), "singular"),
])
def test_bad_matrices_are_refused(matrix, message):
    with pytest.raises(InputError, match=message):
        project_volume(np.zeros((3, 4, 5)), matrix, ProjectionConfig(threshold=0))


def test_progress_and_cancel():
    volume, ijk_to_ras = sphere_phantom(PERMUTATIONS[0])
    fractions = []
    project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=0), progress=lambda f, m: fractions.append(f))
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    with pytest.raises(Cancelled):
        project_volume(volume, ijk_to_ras, ProjectionConfig(threshold=0), should_cancel=lambda: True)


def test_config_round_trip_and_validation():
    config = ProjectionConfig(threshold=-400, table_removal_mm=10, pixel_spacing_mm=3.0, view="lr")
    assert ProjectionConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="view"):
        ProjectionConfig(view="pa")
    with pytest.raises(InputError, match="unknown"):
        ProjectionConfig.from_dict({"thresold": 3})
    with pytest.raises(InputError, match="pixel_spacing_mm"):
        ProjectionConfig(pixel_spacing_mm=0)


@pytest.mark.parametrize("shape_kji", [(5, 6, 7), (3, 4, 2)])  # (3, 4, 2): a row stride of 2 voxels
def test_oblique_samplers_agree_on_voxel_centres_and_refuse_outside(shape_kji):
    rng = np.random.default_rng(3)
    volume = rng.normal(size=shape_kji).astype(np.float32)  # k, j, i
    ijk = [rng.integers(0, n, 50).astype(np.float32) for n in shape_kji[::-1]]
    expected = volume[ijk[2].astype(int), ijk[1].astype(int), ijk[0].astype(int)]
    for sample in (_nearest, _trilinear):
        np.testing.assert_allclose(sample(volume.reshape(-1), volume.shape, ijk), expected, rtol=1e-6)
    off = [np.float32([-0.4, 6.4, 3.0]), np.float32([0.0, 0.0, 5.2]), np.float32([0.0, 4.0, 1.0])]
    assert np.all(_nearest(volume.reshape(-1), volume.shape, off) == -np.inf)
    near = [np.float32([0.6]), np.float32([1.6]), np.float32([1.5])]  # nearest voxel (i, j, k) = (1, 2, 2)
    assert _nearest(volume.reshape(-1), volume.shape, near)[0] == volume[2, 2, 1]
