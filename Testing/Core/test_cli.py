"""The command line as people type it: the common flags before or after the command, short forms, --version, JSON
output, usage errors that exit 2, help that gives every default and README synopses that match it; a resumed batch
that says what it did and refuses another model; every command without tqdm or matplotlib (Slicer's Python)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import LandmarkDetectorLib
from LandmarkDetectorLib import FileFormatError
from LandmarkDetectorLib import model as model_module
from LandmarkDetectorLib.batch import RECORDS_DIR, SETTINGS_FILE
from LandmarkDetectorLib.cli import build_parser, cli_wording, main
from LandmarkDetectorLib.images import pyplot
from LandmarkDetectorLib.synthetic.dataset import synthesize_case
from LandmarkDetectorLib.volume_io import write_volume

SEED = 424_242  # not a training or evaluation seed of the bundled models
README = Path(__file__).resolve().parents[2] / "README.md"
COMMON = {"--help", "--debug", "--quiet", "--verbose"}
HAND = ["-m", "hand-mr", "--device", "cpu"]


@pytest.fixture(scope="module")
def hand_scan():
    return synthesize_case("hand", SEED, 1)


@pytest.fixture(scope="module")
def hand_folder(tmp_path_factory, hand_scan):
    """Two hand volumes and a text file named like a volume (a case that fails)."""
    folder = tmp_path_factory.mktemp("hands")
    for index in range(2):
        write_volume(folder / f"hand_{index}.nrrd", hand_scan.voxels_kji, hand_scan.ijk_to_ras)
    (folder / "notes.nrrd").write_text("not an image\n")
    return folder


@pytest.fixture
def hand_file(hand_folder):
    return hand_folder / "hand_0.nrrd"


_LOADED: dict = {}
_LOAD_MODEL = model_module.load_model


def _load_once(name, device="cpu"):
    key = (str(name), device)
    if key not in _LOADED:
        _LOADED[key] = _LOAD_MODEL(name, device)
    return _LOADED[key]


@pytest.fixture(autouse=True)
def models_loaded_once(monkeypatch):
    """load_model once per model in this module (each load optimizes the network: a second or two)."""
    monkeypatch.setattr(model_module, "load_model", _load_once)


def without(monkeypatch, *modules: str) -> None:
    """Make ``import`` of these modules fail, as where they are not installed (None in sys.modules)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_common_flags_work_before_and_after_the_command(tmp_path, hand_file, capsys):
    for index, (before, after) in enumerate([(["--debug"], []), ([], ["--debug"]), ([], ["-q"]), (["-v"], []),
                                             ([], ["--verbose"]), (["--quiet"], [])]):
        out = tmp_path / f"p{index}.mrk.json"
        assert main([*before, "detect", str(hand_file), "-o", str(out), *HAND, *after]) == 0
        assert out.is_file()
    assert "5 of 5 landmarks found" in capsys.readouterr().out
    with pytest.raises(FileFormatError):  # --debug after the command lets the error through, with its traceback
        main(["detect", str(tmp_path / "missing.nrrd"), "-o", str(tmp_path / "m.mrk.json"), "--debug"])
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(hand_file), "-o", str(tmp_path / "x.mrk.json"), "-q", "-v"])
    assert exit_info.value.code == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and LandmarkDetectorLib.__version__ in capsys.readouterr().out


def test_detect_json_prints_the_point_list(tmp_path, hand_file, hand_scan, capsys):
    assert main(["detect", str(hand_file), "--json", *HAND]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model"] == "hand-mr" and document["found"] == 5 and document["output"] is None
    assert [p["name"] for p in document["landmarks"]] == list(hand_scan.landmark_names)
    positions = np.array([p["position_ras"] for p in document["landmarks"]])
    assert np.linalg.norm(positions - hand_scan.landmarks_ras, axis=1).max() < 8.0
    out = tmp_path / "p.fcsv"
    assert main(["detect", str(hand_file), "--json", "-o", str(out), *HAND]) == 0  # both: the file and the JSON
    assert json.loads(capsys.readouterr().out)["output"] == str(out) and out.is_file()


def test_detect_needs_an_output(hand_file, capsys):
    assert main(["detect", str(hand_file), *HAND]) == 2
    assert "--out" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, hand_folder, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", str(hand_folder), "-o", str(tmp_path / "o"), "--shard", "3/2", *HAND])
    assert exit_info.value.code == 2 and "K must be between 1 and N" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_messages_name_the_flag_not_the_python_keyword():
    assert cli_wording("x.csv already exists; pass overwrite=True to replace it.") == \
        "x.csv already exists; pass --overwrite to replace it."
    assert cli_wording("pass overwrite=True (--overwrite) to replace it; or resume=True") == \
        "pass --overwrite to replace it; or --resume"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_says_its_default():
    for name, parser in subcommands().items():
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and not action.required:
                assert "default" in action.help, f"{name} {action.option_strings[-1]}: {action.help}"


def readme_synopses() -> dict[str, set[str]]:
    """Command -> the long options its synopsis in the README names."""
    synopses: dict[str, str] = {}
    for block in re.findall(r"```text\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        command = None
        for line in block.splitlines():
            match = re.match(r"landmark-detector (\w+)", line)
            if match:
                command = match[1]
                synopses[command] = line
            elif command and line.startswith(" "):
                synopses[command] += line
            else:
                command = None
    return {command: set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text)) for command, text in synopses.items()}


def test_readme_synopses_match_the_help():
    synopses = readme_synopses()
    for name, parser in subcommands().items():
        assert name in synopses, f"the README has no synopsis of {name}"
        options = {o for a in parser._actions for o in a.option_strings if o.startswith("--")} - COMMON
        assert synopses[name] == options, name


def test_readme_python_example_runs_twice(tmp_path, monkeypatch):
    """The example writes ct.mrk.json; run again, it replaces it (overwrite=True) instead of failing."""
    code = re.search(r"\*\*From Python:\*\*\n\n```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[1]
    case = synthesize_case("body", SEED, 0)
    write_volume(tmp_path / "ct.nii.gz", case.voxels_kji, case.ijk_to_ras)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("builtins.print", lambda *args, **kwargs: None)
    for _ in range(2):
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "ct.mrk.json").is_file()


def test_resume_says_what_it_did_and_refuses_another_model(tmp_path, hand_folder, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(hand_folder), "-o", str(out), *HAND]) == 1
    assert "2 ok, 1 failed ->" in capsys.readouterr().out
    settings = json.loads((out / RECORDS_DIR / SETTINGS_FILE).read_text())
    assert settings["model"] == "hand-mr" and len(settings["model_sha256"]) == 64
    assert main(["batch", str(hand_folder), "-o", str(out), "--resume", *HAND]) == 1  # the bad case fails again
    assert "0 ok, 1 failed; 2 skipped (finished earlier) ->" in capsys.readouterr().out
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for other in (["-m", "wholebody-ct"], [*HAND, "--confidence-threshold", "0.9"], [*HAND, "-f", "fcsv"]):
        assert main(["batch", str(hand_folder), "-o", str(out), "--resume", *HAND, *other]) == 2
        error = capsys.readouterr().err
        assert "other settings" in error and "hand-mr" in error and "--overwrite" in error, error
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing was run


def test_commands_run_without_tqdm(tmp_path, monkeypatch, caplog):
    without(monkeypatch, "tqdm", "tqdm.auto", "tqdm.contrib", "tqdm.contrib.logging")
    caplog.set_level("INFO")
    assert main(["synth", "--anatomy", "hand", "-n", "2", "--seed", "5", "-o", str(tmp_path / "synth")]) == 0
    assert main(["batch", str(tmp_path / "synth"), "-o", str(tmp_path / "out"), *HAND]) == 0
    assert "synth hand: 2/2 cases" in caplog.text and "batch: 2/2 cases" in caplog.text


@pytest.mark.slow
def test_train_runs_without_tqdm(tmp_path, monkeypatch, caplog):
    without(monkeypatch, "tqdm", "tqdm.auto", "tqdm.contrib", "tqdm.contrib.logging")
    caplog.set_level("INFO")
    config = {"anatomy": "hand", "canvas": {"height": 48, "width": 48, "pixel_spacing_mm": 6.0}, "steps": 2,
              "batch_size": 2, "validate_every": 2, "validation_size": 4, "workers": 0, "threads": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["train", "--config", str(tmp_path / "config.json"), "-o", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "model.pt").is_file() and "train: 2/2 steps" in caplog.text


def test_preview_without_matplotlib_stops_before_writing(tmp_path, monkeypatch, hand_file, capsys):
    without(monkeypatch, "matplotlib", "matplotlib.pyplot")
    out, preview = tmp_path / "p.mrk.json", tmp_path / "p.png"
    assert main(["detect", str(hand_file), "-o", str(out), "--preview", str(preview), *HAND]) == 1
    error = capsys.readouterr().err
    assert 'slicer.util.pip_install("matplotlib")' in error and "pip install matplotlib" in error
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert main(["detect", str(hand_file), "-o", str(out), *HAND]) == 0  # without --preview it needs none


def test_evaluate_without_matplotlib_writes_the_report(tmp_path, monkeypatch, hand_scan, caplog):
    from LandmarkDetectorLib.markups import PointList, write_markups

    without(monkeypatch, "matplotlib", "matplotlib.pyplot")
    for folder, shift in (("pred", 2.0), ("truth", 0.0)):
        (tmp_path / folder).mkdir()
        write_markups(tmp_path / folder / "a.mrk.json",
                      PointList.from_arrays(hand_scan.landmark_names, hand_scan.landmarks_ras + shift))
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"), "-o",
                 str(tmp_path / "report")]) == 0
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["report.json", "report.md"]
    assert "without plots" in caplog.text


def test_batch_workers_help_says_when_more_workers_pay_off():
    workers = next(a for a in subcommands()["batch"]._actions if "--workers" in a.option_strings)
    assert "pay off only" in workers.help and "GPU" in workers.help and "-w" in workers.option_strings


def test_detection_help_names_each_bundled_models_table_removal():
    """detect and batch use the model's table removal (0 for hand-mr), not the projection's default of 15 mm."""
    for name in ("detect", "batch"):
        action = next(a for a in subcommands()[name]._actions if "--table-removal-mm" in a.option_strings)
        for path in sorted(model_module.BUNDLED_DIR.glob("*.pt")):
            value = model_module.read_metadata(path).projection.table_removal_mm
            assert f"{value:g} for {path.stem}" in action.help, action.help


def test_load_model_defaults_to_the_device_detection_defaults_to():
    """With different defaults, detect_landmarks(volume, matrix, load_model(name)) on a GPU machine would load the
    model again at every call; the README says "auto"."""
    import inspect

    from LandmarkDetectorLib import detect_landmarks

    device = inspect.signature(_LOAD_MODEL).parameters["device"].default
    assert device == inspect.signature(detect_landmarks).parameters["device"].default == "auto"
    assert f'device="{device}" by default' in README.read_text(encoding="utf-8")


def test_worst_cases_picture_has_a_legend(tmp_path, monkeypatch, hand_scan):
    from LandmarkDetectorLib import plots
    from LandmarkDetectorLib.markups import PointList
    from LandmarkDetectorLib.projection import ProjectionConfig, project_volume

    saved = []
    monkeypatch.setattr(plots, "_save", lambda figure, path, overwrite: saved.append(figure))
    image = project_volume(hand_scan.voxels_kji, hand_scan.ijk_to_ras, ProjectionConfig(pixel_spacing_mm=3.0))
    truth = PointList.from_arrays(hand_scan.landmark_names, hand_scan.landmarks_ras)
    guess = PointList.from_arrays(hand_scan.landmark_names, hand_scan.landmarks_ras + 3.0)
    plots.worst_cases([("a", 5.2)], {"a": image}, {"a": guess}, {"a": truth}, tmp_path / "w.png")
    legend = saved[0].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["reference (in view)", "prediction (found)", "error"]
    pyplot().close(saved[0])


def test_models_lists_each_bundled_model_with_its_measured_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("wholebody-ct", "hand-mr"):
        block = out[out.index(f"{name}  ["):]
        assert "measured 3D error (mean / median): real-anatomy phantoms " in block.splitlines()[3]
