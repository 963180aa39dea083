"""The real volumes of ../shared/data load and project to sensible silhouettes (AP and LR views)."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkDetectorLib.projection import ProjectionConfig, project_volume
from LandmarkDetectorLib.volume_io import read_volume

CASES = {
    # file: (expected threshold rule, body fraction range of the AP silhouette)
    "totalseg-example-ct/example_ct.nii.gz": ("ct", (0.8, 1.0)),
    "totalseg-example-ct/example_ct_sm.nii.gz": ("ct", (0.8, 1.0)),
    "totalseg-example-mr/example_mr_sm.nii.gz": ("mr", (0.8, 1.0)),
    "afids-mni152-t1w/tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz": ("mr", (0.5, 0.85)),
}


@pytest.mark.parametrize("relative", sorted(CASES))
def test_real_volume_projects(shared_dir, relative):
    rule, (low, high) = CASES[relative]
    volume = read_volume(shared_dir / "data" / relative)
    ap = project_volume(volume.voxels_kji, volume.ijk_to_ras, ProjectionConfig(view="ap"))
    lr = project_volume(volume.voxels_kji, volume.ijk_to_ras, ProjectionConfig(view="lr"))
    assert (ap.threshold == -500.0) == (rule == "ct")
    assert low <= ap.silhouette.mean() <= high
    assert lr.silhouette.any()
    # The pixel grid covers the volume: its corner voxels map into the image.
    shape = np.array(volume.voxels_kji.shape[::-1]) - 1
    corners = np.array([[i, j, k] for i in (0, shape[0]) for j in (0, shape[1]) for k in (0, shape[2])], float)
    corners_ras = corners @ volume.ijk_to_ras[:3, :3].T + volume.ijk_to_ras[:3, 3]
    uvd = ap.ras_to_uvd(corners_ras)
    assert uvd[:, 0].min() > -0.51 and uvd[:, 0].max() < ap.shape[1] - 0.49
    assert uvd[:, 1].min() > -0.51 and uvd[:, 1].max() < ap.shape[0] - 0.49


def test_head_mr_silhouette_is_the_head(shared_dir):
    """In the AP view of the MNI head the head is centred left-right and its top is near the image top."""
    volume = read_volume(shared_dir / "data" / "afids-mni152-t1w" / "tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz")
    image = project_volume(volume.voxels_kji, volume.ijk_to_ras)
    rows, cols = np.nonzero(image.silhouette)
    centre_r = image.uvd_to_ras([[cols.mean(), rows.mean(), 0.0]])[0, 0]
    assert abs(centre_r) < 10.0  # MNI space: the midline is at R = 0
    top_s = image.uvd_to_ras([[0.0, rows.min(), 0.0]])[0, 2]
    assert 85.0 < top_s < 115.0  # the scalp at the vertex lies about 100 mm above the AC (MNI origin), below the top
    assert top_s < image.uvd_to_ras([[0.0, 0.0, 0.0]])[0, 2] - 10.0  # of the field of view


@pytest.fixture(scope="module")
def wholebody():
    from LandmarkDetectorLib.model import load_model

    return load_model("wholebody-ct", "cpu")


def test_partial_view_ct_reports_its_landmarks_not_found(shared_dir, wholebody):
    """The example CT covers the abdomen: none of the nine landmarks (head to toes) is in its field of view."""
    from LandmarkDetectorLib.pipeline import detect_landmarks

    volume = read_volume(shared_dir / "data" / "totalseg-example-ct" / "example_ct.nii.gz")
    result = detect_landmarks(volume.voxels_kji, volume.ijk_to_ras, wholebody, "cpu")
    assert not result.found.any(), dict(zip(result.names, result.confidence.round(3), strict=True))


@pytest.mark.parametrize("relative", ["totalseg-example-mr/example_mr_sm.nii.gz",
                                      "afids-mni152-t1w/tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz"])
def test_mr_slab_and_head_give_clear_results(shared_dir, wholebody, relative):
    """Outside what the model knows (an MR slab, a head alone) detection answers without crashing, and nothing it
    reports as found lies outside the scanned volume."""
    from LandmarkDetectorLib.pipeline import detect_landmarks

    volume = read_volume(shared_dir / "data" / relative)
    result = detect_landmarks(volume.voxels_kji, volume.ijk_to_ras, wholebody, "cpu")
    assert result.points_ras.shape == (9, 3) and np.isfinite(result.points_ras).all()
    ijk = np.c_[result.points_ras, np.ones(9)] @ np.linalg.inv(volume.ijk_to_ras).T
    inside = np.all((ijk[:, :3] > -0.5) & (ijk[:, :3] < np.array(volume.voxels_kji.shape[::-1]) - 0.5), axis=1)
    assert not (result.found & ~inside).any()
