"""IJK-to-RAS matrices and ITK's geometry (LPS origin, spacing, direction) convert into each other exactly."""

from __future__ import annotations

import numpy as np

from LandmarkDetectorLib import geometry

from phantoms import rotation


def test_itk_geometry_of_an_oblique_anisotropic_volume_round_trips():
    spacing = np.array([0.7, 1.3, 2.9])
    direction_ras = rotation((0.3, -1.0, 0.5), 37.0) @ np.diag([1.0, -1.0, 1.0])
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = direction_ras * spacing
    ijk_to_ras[:3, 3] = (12.5, -40.0, 310.0)
    origin_lps, spacing_out, direction_lps = geometry.itk_from_ijk_to_ras(ijk_to_ras)
    np.testing.assert_allclose(origin_lps, [-12.5, 40.0, 310.0], atol=1e-12)
    np.testing.assert_allclose(spacing_out, spacing, atol=1e-12)
    np.testing.assert_allclose(direction_lps, np.diag([-1.0, -1.0, 1.0]) @ direction_ras, atol=1e-12)
    assert origin_lps.shape == (3,) and direction_lps.shape == (3, 3)
    back = geometry.ijk_to_ras_from_itk(origin_lps.tolist(), spacing_out.tolist(), direction_lps.ravel().tolist())
    np.testing.assert_allclose(back, ijk_to_ras, atol=1e-12)
    np.testing.assert_allclose(geometry.spacing_mm(ijk_to_ras), spacing, atol=1e-12)


def test_lps_and_ras_differ_in_the_sign_of_x_and_y():
    np.testing.assert_array_equal(geometry.lps_to_ras([[1.0, -2.0, 3.0]]), [[-1.0, 2.0, 3.0]])
