"""Detection path (projection -> canvas -> network -> RAS) with an analytic model, in every orientation."""

from __future__ import annotations

import numpy as np
import pytest
from analytic_model import save_centroid_model

from LandmarkDetectorLib.errors import Cancelled, InputError
from LandmarkDetectorLib.model import load_model
from LandmarkDetectorLib.pipeline import detect_landmarks, landmark_found

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
    assert result.names == ("Centroid",) and result.in_view.tolist() == [True]
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
