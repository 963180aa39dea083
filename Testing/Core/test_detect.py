"""Detection through the Python API and ``landmark-detector detect``, with the bundled hand-mr model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkDetectorLib import InputError, detect_landmarks, load_model
from LandmarkDetectorLib.cli import main
from LandmarkDetectorLib.geometry import apply_affine
from LandmarkDetectorLib.markups import read_markups
from LandmarkDetectorLib.synthetic.dataset import synthesize_case
from LandmarkDetectorLib.synthetic.scan import landmarks_in_view
from LandmarkDetectorLib.volume_io import write_volume

SEED = 424_242  # not a training or evaluation seed of the bundled models


@pytest.fixture(scope="module")
def hand_model():
    return load_model("hand-mr", "cpu")


@pytest.fixture(scope="module")
def hand_scan():
    return synthesize_case("hand", SEED, 1)


def cut_off_fingers(scan):
    """The scan without the fingertips' half: (voxels_kji, ijk_to_ras), origin moved so RAS positions stay."""
    ijk = apply_affine(np.linalg.inv(scan.ijk_to_ras), scan.landmarks_ras)
    size_ijk = np.array(scan.voxels_kji.shape[::-1])
    offset = ijk[2] - (size_ijk - 1) / 2  # the middle fingertip, from the centre
    axis = int(np.argmax(np.abs(offset) / size_ijk))
    n = size_ijk[axis]
    keep = slice(0, int(n * 0.55)) if offset[axis] > 0 else slice(int(n * 0.45), n)
    index = [slice(None)] * 3
    index[2 - axis] = keep
    shift = np.eye(4)
    shift[axis, 3] = keep.start
    return np.ascontiguousarray(scan.voxels_kji[tuple(index)]), scan.ijk_to_ras @ shift


def test_api_detects_synthetic_hand_within_the_model_card(hand_model, hand_scan):
    result = detect_landmarks(hand_scan.voxels_kji, hand_scan.ijk_to_ras, hand_model, device="cpu")
    assert result.names == hand_scan.landmark_names
    assert result.points_ras.shape == (5, 3) and result.confidence.shape == (5,) and result.found.all()
    errors = np.linalg.norm(result.points_ras - hand_scan.landmarks_ras, axis=1)
    card = hand_model.metadata.metrics["evaluation"]["heatmap-unet"]["model"]["all"]
    assert errors.max() < card["max_mm"] + 2.0, errors


def test_api_takes_a_model_name_and_auto_device(hand_model, hand_scan):
    by_name = detect_landmarks(hand_scan.voxels_kji, hand_scan.ijk_to_ras, "hand-mr")  # device="auto"
    loaded = detect_landmarks(hand_scan.voxels_kji, hand_scan.ijk_to_ras, hand_model, "cpu")
    np.testing.assert_allclose(by_name.points_ras, loaded.points_ras, atol=1e-3)
    np.testing.assert_allclose(by_name.confidence, loaded.confidence, atol=1e-5)


def test_landmarks_outside_the_field_of_view_are_not_found(hand_model, hand_scan):
    voxels, ijk_to_ras = cut_off_fingers(hand_scan)
    assert not landmarks_in_view(hand_scan.landmarks_ras, ijk_to_ras, voxels.shape).any()
    result = detect_landmarks(voxels, ijk_to_ras, hand_model, "cpu")
    assert not result.found[1:].any(), result.confidence  # the four fingers; the thumb may lie near the cut


def test_cuda_without_a_gpu_is_a_clear_error(hand_model, hand_scan):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(InputError, match="no CUDA GPU"):
        detect_landmarks(hand_scan.voxels_kji, hand_scan.ijk_to_ras, hand_model, "cuda")


@pytest.mark.gpu
def test_cpu_and_cuda_agree(hand_model, hand_scan):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = detect_landmarks(hand_scan.voxels_kji, hand_scan.ijk_to_ras, hand_model, "cpu")
    cuda = detect_landmarks(hand_scan.voxels_kji, hand_scan.ijk_to_ras, hand_model, "cuda")
    np.testing.assert_allclose(cuda.points_ras, cpu.points_ras, atol=0.05)
    np.testing.assert_allclose(cuda.confidence, cpu.confidence, atol=1e-3)
    assert hand_model.device == "cpu"  # moving to the GPU copies; the caller's model stays where it was


@pytest.fixture
def hand_file(tmp_path, hand_scan):
    path = tmp_path / "hand.nrrd"
    write_volume(path, hand_scan.voxels_kji, hand_scan.ijk_to_ras)
    return path


@pytest.mark.parametrize("suffix", [".mrk.json", ".fcsv", ".csv"])
def test_detect_command_writes_the_point_list(tmp_path, hand_file, hand_scan, capsys, suffix):
    out = tmp_path / f"points{suffix}"
    assert main(["detect", str(hand_file), "--model", "hand-mr", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MiddleTip" in printed and "5 of 5 landmarks found" in printed
    points = read_markups(out)
    assert [p.label for p in points.points] == list(hand_scan.landmark_names)
    errors = np.linalg.norm(points.positions_ras() - hand_scan.landmarks_ras, axis=1)
    assert errors.max() < 8.0, errors
    if suffix != ".csv":  # Slicer's .csv has no description column
        assert all(float(p.description.removeprefix("confidence ")) > 0.9 for p in points.points)


def test_detect_keeps_not_found_landmarks_as_unplaced_points(tmp_path, hand_scan):
    voxels, ijk_to_ras = cut_off_fingers(hand_scan)
    volume = tmp_path / "palm.nii.gz"
    write_volume(volume, voxels, ijk_to_ras)
    out = tmp_path / "palm.mrk.json"
    assert main(["detect", str(volume), "--model", "hand-mr", "--out", str(out)]) == 0
    points = {p.label: p for p in read_markups(out).points}
    assert set(points) == set(hand_scan.landmark_names)
    for name in ("IndexTip", "MiddleTip", "RingTip", "LittleTip"):
        assert points[name].status == "undefined" and "not found" in points[name].description
    statuses = {p["label"]: p["positionStatus"] for p in json.loads(out.read_text())["markups"][0]["controlPoints"]}
    assert statuses["MiddleTip"] == "undefined"


def test_detect_preview_is_a_png(tmp_path, hand_file):
    out, preview = tmp_path / "p.mrk.json", tmp_path / "preview.png"
    assert main(["detect", str(hand_file), "--model", "hand-mr", "--out", str(out), "--preview", str(preview)]) == 0
    image = sitk.ReadImage(str(preview))
    assert image.GetSize()[0] > 300 and image.GetNumberOfComponentsPerPixel() in (3, 4)
    pixels = sitk.GetArrayFromImage(image)
    assert pixels.std() > 10  # a picture, not a blank


def test_detect_refuses_to_overwrite_and_changes_nothing(tmp_path, hand_file, capsys):
    out = tmp_path / "mine.mrk.json"
    out.write_text("my own points")
    assert main(["detect", str(hand_file), "--model", "hand-mr", "--out", str(out)]) == 2  # wrong usage
    error = capsys.readouterr().err
    assert "already exists; pass --overwrite to replace it" in error and "overwrite=True" not in error
    assert out.read_text() == "my own points"
    assert main(["detect", str(hand_file), "--model", "hand-mr", "--out", str(out), "--overwrite"]) == 0
    assert len(read_markups(out).points) == 5


@pytest.mark.parametrize(("arguments", "message"), [
    (["--model", "no-such-model"], "unknown model"),
    (["--device", "cuda"], "no CUDA GPU"),
])
def test_detect_bad_options_fail_clearly(tmp_path, hand_file, capsys, arguments, message):
    import torch

    if "cuda" in arguments and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "x.mrk.json"
    assert main(["detect", str(hand_file), "--out", str(out), "--model", "hand-mr", *arguments]) == 1
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not out.exists()


def test_detect_needs_a_known_output_format(tmp_path, hand_file, capsys):
    with pytest.raises(SystemExit) as exit_info:  # a usage error, found before reading anything
        main(["detect", str(hand_file), "--model", "hand-mr", "--out", str(tmp_path / "x.txt")])
    assert exit_info.value.code == 2
    assert "unsupported markups file extension" in capsys.readouterr().err


def test_slicer_batch_script_runs_the_command_line(tmp_path, hand_file):
    """The script Slicer runs with --python-script; here under plain Python (it then exits with sys.exit)."""
    script = Path(__file__).resolve().parents[2] / "LandmarkDetector" / "Resources" / "Scripts" / \
        "landmark_detector_cli.py"
    out = tmp_path / "s.mrk.json"
    done = subprocess.run([sys.executable, str(script), "detect", str(hand_file), "--model", "hand-mr", "--out",
                           str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(read_markups(out).points) == 5
    failed = subprocess.run([sys.executable, str(script), "detect", str(tmp_path / "missing.nrrd"), "--out",
                             str(tmp_path / "m.mrk.json")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert failed.returncode == 1 and "does not exist" in failed.stderr
