"""Synthetic CT and MR volumes: readable, landmarks where they belong, field-of-view cuts, reproducible files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from LandmarkDetectorLib import cli
from LandmarkDetectorLib.markups import read_markups
from LandmarkDetectorLib.projection import ProjectionConfig, project_volume
from LandmarkDetectorLib.synthetic import body, dataset, hand
from LandmarkDetectorLib.synthetic.anatomy import BODY_LANDMARKS, HAND_LANDMARKS
from LandmarkDetectorLib.synthetic.render import render
from LandmarkDetectorLib.synthetic.scan import CTScanConfig, MRScanConfig, ct_scan, mr_hand_scan
from LandmarkDetectorLib.volume_io import read_volume, write_volume

FAST_CT = CTScanConfig(in_plane_mm=(4.0, 5.0), slice_mm=(4.0, 5.0))
FAST_MR = MRScanConfig(in_plane_mm=(1.5, 2.0), slice_mm=(2.0, 3.0))


def _body_scan(seed: int, config: CTScanConfig = FAST_CT):
    rng = np.random.default_rng([seed, 9])
    anatomy = body.build_body(body.sample_body(rng), body.sample_pose(rng))
    return anatomy, ct_scan(anatomy, rng, config)


def _near_silhouette(image, points_ras, radius_px: int = 1) -> list[bool]:
    out = []
    for u, v, _ in image.ras_to_uvd(points_ras):
        r, c = int(round(v)), int(round(u))
        out.append(bool(image.silhouette[max(r - radius_px, 0):r + radius_px + 1,
                                         max(c - radius_px, 0):c + radius_px + 1].any()))
    return out


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("seed", [0, 1])
def test_ct_volume_reads_back_and_landmarks_fall_on_the_body(tmp_path: Path, seed: int) -> None:
    config = CTScanConfig(in_plane_mm=(4.0, 5.0), slice_mm=(4.0, 5.0), p_cut=0.0, p_oblique=0.0)
    anatomy, scan = _body_scan(seed, config)
    path = tmp_path / "ct.nii.gz"
    write_volume(path, scan.voxels_kji, scan.ijk_to_ras)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.voxels_kji, scan.voxels_kji)
    np.testing.assert_allclose(volume.ijk_to_ras, scan.ijk_to_ras, atol=1e-4)
    assert volume.voxels_kji.dtype == np.int16
    values = volume.voxels_kji
    assert np.median(values) < -900  # mostly air
    assert (values > 700).sum() > 1000  # bones
    image = project_volume(values, volume.ijk_to_ras)  # -500 HU, table removed
    rendered = render(anatomy.skin, image.pixel_to_ras, image.shape)
    iou = (image.silhouette & rendered.silhouette).sum() / (image.silhouette | rendered.silhouette).sum()
    assert iou > 0.9  # the table is removed and the body kept
    # Fingertips are left out: a finger is thinner than the 15 mm that table removal asks of a ray, so at
    # these coarse voxels its tip may be removed with the table (a limitation of the paper's projection).
    check = scan.in_view & np.array(["Finger" not in name for name in scan.landmark_names])
    assert all(_near_silhouette(image, scan.landmarks_ras[check]))


def test_fov_cuts_mark_landmarks_not_in_view() -> None:
    cuts = set()
    for seed in range(10):
        anatomy, scan = _body_scan(seed, CTScanConfig(in_plane_mm=(8.0, 8.0), slice_mm=(8.0, 8.0), p_cut=1.0))
        cut = scan.info["cut"]
        cuts.add(cut)
        view = dict(zip(scan.landmark_names, scan.in_view, strict=True))
        if "head" in cut:
            assert not view["HeadTop"]
        if "legs" in cut:
            assert not view["BigToeR"] and not view["BigToeL"]
        # in_view means inside the volume's voxel bounds
        ijk = np.c_[scan.landmarks_ras, np.ones(len(scan.in_view))] @ np.linalg.inv(scan.ijk_to_ras).T
        inside = np.all((ijk[:, :3] >= -0.5) & (ijk[:, :3] <= np.array(scan.voxels_kji.shape[::-1]) - 0.5), axis=1)
        np.testing.assert_array_equal(inside, scan.in_view)
        gt = dataset.ground_truth(scan)
        assert [p.status for p in gt.points] == ["defined" if ok else "undefined" for ok in scan.in_view]
    assert cuts >= {"head", "legs", "head+legs"}


def test_scan_conditions_vary() -> None:
    config = CTScanConfig(in_plane_mm=(12.0, 12.0), slice_mm=(12.0, 12.0), p_prone=0.3, p_feet_first=0.3, p_oblique=0.3)
    infos = [_body_scan(seed, config)[1].info for seed in range(12)]
    assert len({i["position"] for i in infos}) >= 3
    assert len({i["convention"] for i in infos}) >= 3
    assert any(i["oblique"] for i in infos)


def test_mr_hand_volume() -> None:
    anatomy = hand.build_hand(hand.sample_hand(np.random.default_rng(4)))
    scan = mr_hand_scan(anatomy, np.random.default_rng(5), MRScanConfig(in_plane_mm=(1.0, 1.0), slice_mm=(1.5, 1.5)))
    assert scan.landmark_names == HAND_LANDMARKS and scan.in_view.all()
    v = scan.voxels_kji
    assert v.dtype == np.int16 and v.min() >= 0
    lm_ijk = np.rint(np.c_[scan.landmarks_ras, np.ones(5)] @ np.linalg.inv(scan.ijk_to_ras).T)[:, :3].astype(int)
    background = np.median(v[:3, :3, :3])
    assert background < 0.15 * np.percentile(v, 99)  # dark air, bright tissue
    image = project_volume(v, scan.ijk_to_ras, ProjectionConfig(table_removal_mm=0.0))  # Otsu threshold
    assert all(_near_silhouette(image, scan.landmarks_ras, radius_px=2))
    assert image.silhouette.mean() < 0.5 and lm_ijk.min() >= 0


@pytest.mark.parametrize("fmt", ["nii.gz", "nrrd"])
def test_same_seed_same_bytes_different_seed_different_cases(tmp_path: Path, fmt: str) -> None:
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = tmp_path / name
        dataset.synthesize_dataset("body", 1, seed, out, fmt=fmt, ct_config=FAST_CT)
        dataset.synthesize_dataset("hand", 1, seed, out, fmt=fmt, mr_config=FAST_MR)
        runs[name] = out
    assert _digests(runs["a"]) == _digests(runs["b"])
    assert sorted(p.name for p in runs["a"].iterdir()) == sorted([f"body_s7_0000.{fmt}", "body_s7_0000.mrk.json",
                                                                   f"hand_s7_0000.{fmt}", "hand_s7_0000.mrk.json"])
    a = read_markups(runs["a"] / "body_s7_0000.mrk.json")
    c = read_markups(runs["c"] / "body_s8_0000.mrk.json")
    assert a.labels == list(BODY_LANDMARKS)
    assert not np.allclose(np.nan_to_num(a.positions_ras()), np.nan_to_num(c.positions_ras()))


def test_ground_truth_file_is_lps_with_undefined_points(tmp_path: Path) -> None:
    config = CTScanConfig(in_plane_mm=(6.0, 6.0), slice_mm=(6.0, 6.0), p_cut=1.0)
    for seed in range(6):
        dataset.synthesize_dataset("body", 1, seed, tmp_path / str(seed), ct_config=config)
        scan = dataset.synthesize_case("body", seed, 0, ct_config=config)
        doc = json.loads((tmp_path / str(seed) / f"body_s{seed}_0000.mrk.json").read_text())
        points = doc["markups"][0]["controlPoints"]
        assert doc["markups"][0]["coordinateSystem"] == "LPS"
        for point, ras, ok in zip(points, scan.landmarks_ras, scan.in_view, strict=True):
            assert point["positionStatus"] == ("defined" if ok else "undefined")
            if ok:
                np.testing.assert_allclose(point["position"], [-ras[0], -ras[1], ras[2]], atol=1e-6)
        if not scan.in_view.all():
            return
    pytest.fail("no field-of-view cut hid a landmark")


def test_cli_synth(tmp_path: Path) -> None:
    args = ["synth", "--anatomy", "hand", "--count", "2", "--seed", "3", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hand_s3_0000.mrk.json", "hand_s3_0000.nii.gz",
                                                         "hand_s3_0001.mrk.json", "hand_s3_0001.nii.gz"]
    before = _digests(tmp_path)
    assert cli.main(args) == 2  # refuses to overwrite: wrong usage
    assert cli.main(args + ["--overwrite"]) == 0
    assert _digests(tmp_path) == before
    with pytest.raises(SystemExit):
        cli.main(["synth", "--anatomy", "hand", "--count", "0", "--out", str(tmp_path)])
