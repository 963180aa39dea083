"""``landmark-detector project``: PNGs and projection.json whose pixel_to_ras maps pixels back to RAS."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkDetectorLib.cli import main
from LandmarkDetectorLib.volume_io import write_volume

from phantoms import make_ijk_to_ras, rotation, spheres_volume

CENTRE_RAS = np.array([4.0, -6.0, 9.0])


@pytest.fixture
def sphere_file(tmp_path):
    shape = (31, 35, 41)
    ijk_to_ras = make_ijk_to_ras(rotation((0, 0, 1), 180) @ np.diag([1.0, 1.0, -1.0]), (1.5, 1.2, 2.0), shape,
                                 (0.0, 0.0, 0.0))
    path = tmp_path / "sphere.nrrd"
    write_volume(path, spheres_volume(shape, ijk_to_ras, CENTRE_RAS, 12.0), ijk_to_ras)
    return path


def test_project_writes_pngs_and_mapping(sphere_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["project", str(sphere_file), "--out", str(out), "--table-removal-mm", "0"]) == 0
    info = json.loads((out / "projection.json").read_text())
    silhouette = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "silhouette.png")))
    depth = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "depth.png")))
    assert silhouette.shape == depth.shape == tuple(info["shape_vu"])
    assert set(np.unique(silhouette)) == {0, 255}
    assert np.all((depth > 0) == (silhouette > 0))
    rows, cols = np.nonzero(silhouette)
    pixel_to_ras = np.array(info["pixel_to_ras"])
    nearest = np.argmax(depth[rows, cols])  # the brightest pixel is the nearest surface, the sphere's front
    front = pixel_to_ras @ [cols.mean(), rows.mean(), 0.0, 1.0]
    # The disk centre maps onto the sphere centre in the image plane (the ray is along -A).
    np.testing.assert_allclose(front[[0, 2]], CENTRE_RAS[[0, 2]], atol=0.75)
    assert depth[rows[nearest], cols[nearest]] == 255
    assert info["threshold"] == -500.0 and info["view"] == "ap"
    assert "sphere.nrrd" in capsys.readouterr().out


def test_project_refuses_to_overwrite(sphere_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "depth.png").write_text("mine")
    assert main(["project", str(sphere_file), "--out", str(out)]) == 2  # wrong usage
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "depth.png").read_text() == "mine"
    assert not (out / "silhouette.png").exists()
    assert main(["project", str(sphere_file), "--out", str(out), "--overwrite"]) == 0


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["project", "x.nrrd", "--out", "o", "--pixel-spacing", "-1"])
    assert exit_info.value.code == 2
    assert "not a positive number" in capsys.readouterr().err


def test_bad_input_exits_1_without_traceback(tmp_path, capsys):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    assert main(["project", str(tmp_path / "bad.nii.gz"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "cannot read" in err and "Traceback" not in err
