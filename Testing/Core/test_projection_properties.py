"""Property test of the projection geometry: any orientation (rotations, flips, sheared grids), spacing and size.

A sphere at a random place is projected; its centre measured on the image (disk centroid, surface depth plus the
sphere's sagitta, as in test_projection.py) and back-projected with ``uvd_to_ras`` must be where it was put, and
``ras_to_uvd`` must invert ``uvd_to_ras``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from LandmarkDetectorLib.projection import ProjectionConfig, project_volume

from phantoms import make_ijk_to_ras, spheres_volume

RADIUS_MM = 10.0


def rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


unit = st.floats(-1.0, 1.0)
quaternion = st.tuples(unit, unit, unit, unit).map(np.array).filter(lambda q: np.linalg.norm(q) > 0.2)
flips = st.tuples(*[st.sampled_from([1.0, -1.0])] * 3)
shear = st.one_of(st.just((0.0, 0.0, 0.0)), st.tuples(*[st.floats(-0.25, 0.25)] * 3))
spacing = st.tuples(*[st.floats(0.8, 2.5)] * 3)
extent_mm = st.tuples(*[st.floats(48.0, 64.0)] * 3)
offset = st.tuples(*[st.floats(-5.0, 5.0)] * 3)


def direction_matrix(q: np.ndarray, signs: tuple[float, float, float], shears: tuple[float, float, float]
                     ) -> np.ndarray:
    """Columns = the i, j, k axes in RAS: a rotation with flipped axes, sheared (not orthogonal) when asked."""
    sheared = np.array([[1.0, shears[0], shears[1]], [0.0, 1.0, shears[2]], [0.0, 0.0, 1.0]])
    m = rotation_from_quaternion(q) @ np.diag(signs) @ sheared
    return m / np.linalg.norm(m, axis=0)


def measured_centre_ras(image, centre_ras: np.ndarray) -> np.ndarray:
    """The sphere's centre from its projection: disk centroid and mean surface depth plus the sagitta."""
    su, sv = image.pixel_spacing_mm
    vv, uu = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    u_c, v_c = uu[image.silhouette].mean(), vv[image.silhouette].mean()
    rho2 = ((uu - u_c) * su) ** 2 + ((vv - v_c) * sv) ** 2
    core = image.silhouette & (rho2 <= (0.7 * RADIUS_MM) ** 2)
    depth = (image.depth_mm[core] + np.sqrt(RADIUS_MM ** 2 - rho2[core])).mean()
    return image.uvd_to_ras([[u_c, v_c, depth]])[0]


@settings(max_examples=60, deadline=None)
@given(q=quaternion, signs=flips, shears=shear, spacing=spacing, extent=extent_mm, offset=offset,
       view=st.sampled_from(["ap", "lr"]), pixel=st.sampled_from([None, 1.7]))
def test_projection_then_back_projection_is_the_identity(q, signs, shears, spacing, extent, offset, view, pixel):
    shape_kji = tuple(int(np.ceil(e / s)) for e, s in zip(extent[::-1], spacing[::-1], strict=True))
    ijk_to_ras = make_ijk_to_ras(direction_matrix(q, signs, shears), spacing, shape_kji, (4.0, -3.0, 2.0))
    centre = np.array([4.0, -3.0, 2.0]) + np.array(offset)
    volume = spheres_volume(shape_kji, ijk_to_ras, centre, RADIUS_MM)
    image = project_volume(volume, ijk_to_ras, ProjectionConfig(table_removal_mm=0, view=view, pixel_spacing_mm=pixel))

    uvd = np.random.default_rng(0).uniform(-20, 80, size=(10, 3))
    np.testing.assert_allclose(image.ras_to_uvd(image.uvd_to_ras(uvd)), uvd, atol=1e-9)
    # Centres within half a pixel across the ray and half a voxel along it.
    expected_uvd = image.ras_to_uvd(centre[None])[0]
    got_uvd = image.ras_to_uvd(measured_centre_ras(image, centre)[None])[0]
    assert abs(got_uvd[0] - expected_uvd[0]) <= 0.5, (got_uvd, expected_uvd)
    assert abs(got_uvd[1] - expected_uvd[1]) <= 0.5, (got_uvd, expected_uvd)
    assert abs(got_uvd[2] - expected_uvd[2]) <= 0.5 * max(spacing) + 0.1, (got_uvd, expected_uvd)
