"""Model bundles: TorchScript round trip with metadata, and refusal of anything else with a clear message."""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from LandmarkDetectorLib.errors import InputError, ModelError
from LandmarkDetectorLib.framing import CanvasSpec
from LandmarkDetectorLib.model import (
    METADATA_FILE,
    LandmarkModel,
    ModelMetadata,
    _check_outputs,
    load_model,
    read_metadata,
    resolve_device,
    save_model,
    user_models_dir,
)
from LandmarkDetectorLib.projection import ProjectionConfig
from LandmarkDetectorLib.training.networks import HeatmapUNet, RegressionCNN

NAMES = ("A", "B", "C")
SPEC = CanvasSpec(height=64, width=32, pixel_spacing_mm=8.0)


def metadata(**changes) -> ModelMetadata:
    values = dict(name="test", landmarks=NAMES, canvas=SPEC, projection=ProjectionConfig(table_removal_mm=10.0),
                  architecture="heatmap-unet", description="A test model.", confidence_threshold=0.625,
                  mirror_tolerance_mm=25.0, depth_fractions={"B": 0.375}, surface_extremes={"A": (0.0, 0.6, -0.8)},
                  onto_skin=("A",), limb_tips={"A": "B"}, training={"seed": 1},
                  metrics={"mean_mm": 1.0})  # no field at its default
    values.update(changes)
    return ModelMetadata(**values)


@pytest.mark.parametrize("network", [HeatmapUNet(len(NAMES), levels=(8, 16, 16)), RegressionCNN(len(NAMES), 64, 32)])
def test_round_trip_gives_same_outputs(tmp_path, network):
    torch.manual_seed(0)
    network.eval()
    path = tmp_path / "m.pt"
    save_model(network, metadata(), path)
    model = load_model(path)
    assert model.metadata == metadata()
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = [t.numpy() for t in network(torch.from_numpy(x))]
    uv, depth, probability = model.predict(x)
    np.testing.assert_allclose(uv, expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(depth, expected[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-expected[2])), rtol=1e-5, atol=1e-6)
    assert uv.shape == (2, 3, 2) and depth.shape == (2, 3) and probability.shape == (2, 3)


def test_metadata_json_round_trip():
    m = metadata()
    assert ModelMetadata.from_json(m.to_json()) == m


def test_soft_argmax_is_sub_pixel():
    from LandmarkDetectorLib.training.networks import soft_argmax

    logits = torch.full((1, 1, 4, 4), -1e4)
    logits[0, 0, 1, 2] = 0.0
    logits[0, 0, 1, 3] = 0.0  # two equal peaks: the position is halfway between them
    depth = torch.zeros(1, 1, 4, 4)
    depth[0, 0, 1, 2], depth[0, 0, 1, 3] = 1.0, 3.0
    uv, d = soft_argmax(logits, depth, stride=2)
    # heatmap x = 2.5 -> canvas u = (2.5 + 0.5) * 2 - 0.5; y = 1 -> v = 1.5 * 2 - 0.5
    np.testing.assert_allclose(uv[0, 0].numpy(), [5.5, 2.5], atol=1e-6)
    assert d.item() == pytest.approx(2.0)


def saved(tmp_path, network=None, meta=None, name="m.pt", extra=None):
    network = network or HeatmapUNet(len(NAMES), levels=(8, 16, 16))
    path = tmp_path / name
    files = {METADATA_FILE: (meta or metadata()).to_json()} if extra is None else extra
    torch.jit.save(torch.jit.script(network.eval()), str(path), _extra_files=files)
    return path


def test_refuses_random_bytes(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ModelError, match="not a TorchScript model bundle"):
        load_model(path)


def test_refuses_a_pickle(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelError, match="not a TorchScript model bundle"):
        load_model(path)


def test_refuses_torch_save_checkpoint_without_metadata(tmp_path):
    path = tmp_path / "state.pt"
    torch.save(HeatmapUNet(3, levels=(8, 16, 16)).state_dict(), path)  # a zip, but no metadata
    with pytest.raises(ModelError, match="no landmark_detector.json metadata"):
        load_model(path)


def test_refuses_torchscript_without_metadata(tmp_path):
    with pytest.raises(ModelError, match="no landmark_detector.json metadata"):
        load_model(saved(tmp_path, extra={}))


def test_refuses_other_format_version(tmp_path):
    text = metadata().to_json().replace('"format_version": 1', '"format_version": 99')
    with pytest.raises(ModelError, match="format version 99"):
        load_model(saved(tmp_path, extra={METADATA_FILE: text}))


def test_refuses_broken_metadata(tmp_path):
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(saved(tmp_path, extra={METADATA_FILE: "{oops"}))
    text = metadata().to_json().replace('"landmarks"', '"landmarkz"')
    with pytest.raises(ModelError, match="invalid metadata"):
        load_model(saved(tmp_path, extra={METADATA_FILE: text}, name="b.pt"))
    with pytest.raises(ModelError, match="unique"):
        load_model(saved(tmp_path, meta=metadata(landmarks=("A", "A", "C")), name="c.pt"))


def test_refuses_outputs_that_do_not_match_the_landmarks(tmp_path):
    path = saved(tmp_path, network=HeatmapUNet(5, levels=(8, 16, 16)))  # 5 outputs, 3 names
    with pytest.raises(ModelError, match="do not match its 3 landmarks"):
        load_model(path)


def test_refuses_truncated_bundle(tmp_path):
    path = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        load_model(path)


def test_unknown_name_lists_the_available_models():
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        load_model("no-such-model")


def test_read_metadata_needs_no_network(tmp_path):
    path = saved(tmp_path)
    assert read_metadata(path).landmarks == NAMES
    with zipfile.ZipFile(path) as archive:
        assert any(n.endswith(f"extra/{METADATA_FILE}") for n in archive.namelist())


def bundled_with_checksum(tmp_path, monkeypatch, name):
    """A bundle ``name`` in a stand-in bundled-models folder, listed in its SHA256SUMS; no user models."""
    from LandmarkDetectorLib import model as model_module
    from LandmarkDetectorLib.model import sha256_of

    bundled = tmp_path / "Models"
    bundled.mkdir()
    path = saved(bundled, name=name)
    (bundled / "SHA256SUMS").write_text(f"{sha256_of(path)}  {name}\n")
    monkeypatch.setattr(model_module, "BUNDLED_DIR", bundled)
    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path / "none"))
    return path


def test_bundled_models_are_checked_against_their_sha256(tmp_path, monkeypatch):
    path = bundled_with_checksum(tmp_path, monkeypatch, "demo.pt")
    bundled = path.parent
    assert load_model("demo").metadata.landmarks == NAMES
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF  # flip bits in the archive's tail
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        load_model("demo")
    (bundled / "SHA256SUMS").write_text("")
    with pytest.raises(ModelError, match="not listed"):
        load_model("demo")


def test_user_models_are_listed_beside_bundled_ones(tmp_path, monkeypatch):
    from LandmarkDetectorLib.model import available_models

    saved(tmp_path, name="mine.pt")
    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path))
    models = available_models()
    assert models["mine"] == tmp_path / "mine.pt"
    assert load_model("mine").metadata.name == "test"


class Trap:
    """Unpickling this creates the folder ``marker``: the proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy pickle", "zip pickle"])
def test_torch_save_pickles_are_never_unpickled(tmp_path, zip_format):
    marker = tmp_path / "unpickled"
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2), "trap": Trap(marker)}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(ModelError, match="no landmark_detector" if zip_format else "not a TorchScript model bundle"):
        load_model(path)
    if zip_format:  # add valid metadata: now it passes the metadata check and must fail as TorchScript
        with zipfile.ZipFile(path, "a") as archive:
            prefix = archive.namelist()[0].split("/")[0]
            archive.writestr(f"{prefix}/extra/{METADATA_FILE}", metadata().to_json())
        assert read_metadata(path).landmarks == NAMES
        with pytest.raises(ModelError, match="could not be loaded as TorchScript"):
            load_model(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(Trap(tmp_path / "armed")))  # the trap works: unpickling would have set it off
    assert (tmp_path / "armed").is_dir()


def test_refuses_a_zip_that_is_not_torchscript(tmp_path):
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    with pytest.raises(ModelError, match="no landmark_detector.json metadata"):
        load_model(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"notes/extra/{METADATA_FILE}", metadata().to_json())
    with pytest.raises(ModelError, match="could not be loaded as TorchScript"):
        load_model(path)


class OneTensor(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, :3, :2]


class WithAnInteger(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        return x[:, 0, :3, :2], x[:, 0, 0, :3], 3


@pytest.mark.parametrize(("network", "message"), [(OneTensor(), r"outputs one Tensor \(1, 3, 2\)"),
                                                  (WithAnInteger(), r"outputs \[\(1, 3, 2\), \(1, 3\), 'int'\]")])
def test_refuses_outputs_of_the_wrong_kind(tmp_path, network, message):
    with pytest.raises(ModelError, match=message + ".*expected a tuple"):
        load_model(saved(tmp_path, network=network))


def test_default_model_and_model_files(tmp_path, monkeypatch):
    from LandmarkDetectorLib import model as model_module

    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path))
    assert model_module.default_model() == model_module.DEFAULT_MODEL == "wholebody-ct"
    path = saved(tmp_path, name="mine.pt")
    assert model_module.model_file("mine") == path and model_module.model_file(path) == path
    assert model_module.model_name_of(path) == "mine"
    (tmp_path / "elsewhere").mkdir()
    other = saved(tmp_path / "elsewhere", name="x.pt")
    assert model_module.model_name_of(other) == str(other)
    with pytest.raises(ModelError, match="unknown model 'no-such-model'; available: hand-mr, wholebody-ct, mine"):
        model_module.model_file("no-such-model")
    monkeypatch.setattr(model_module, "available_models", lambda: {"hand-mr": path})
    assert model_module.default_model() == "hand-mr"


@pytest.mark.parametrize("name", ["", "../x", "a b", "-x", "hand-mr", "x.pt"])
def test_user_model_names_that_cannot_be_used(tmp_path, monkeypatch, name):
    from LandmarkDetectorLib.errors import InputError
    from LandmarkDetectorLib.model import user_model_path

    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path))
    assert user_model_path("knees-v2.1") == tmp_path / "knees-v2.1.pt"
    with pytest.raises(InputError, match="bundled model's name" if name == "hand-mr" else "must start with"):
        user_model_path(name)


def test_measured_accuracy_per_set_real_anatomy_first():
    from LandmarkDetectorLib.model import measured_accuracy, measured_error_text

    def measured(mean: float) -> dict:
        return {"new": {"model": {"all": {"mean_mm": mean, "median_mm": mean - 1}}},
                "bundled before": {"model": {"all": {"mean_mm": 99.0, "median_mm": 99.0}}}}

    sets = {"synthetic anny hands": measured(2.0), "real-anatomy phantoms": measured(3.0),
            "synthetic primitive hands": measured(1.44)}
    bundled = metadata(metrics={"evaluation": {"sets": sets, "heatmap-unet": {"model": {"all": {"mean_mm": 5.0}}}}})
    assert list(measured_accuracy(bundled)) == ["real-anatomy phantoms", "synthetic anny hands",
                                                "synthetic primitive hands"]
    assert measured_error_text(bundled) == ("real-anatomy phantoms 3.0 / 2.0 mm; synthetic anny hands 2.0 / 1.0 mm; "
                                            "synthetic primitive hands 1.4 / 0.4 mm")
    cross_validated = {"mean_mm": 4.0, "median_mm": 3.0}
    finetuned = metadata(metrics={"cross_validation": {"finetuned_cross_validated": {"all": cross_validated}}})
    assert measured_accuracy(finetuned) == {"cross-validated on its fine-tuning cases": cross_validated}
    assert measured_accuracy(metadata(metrics={})) == {} and measured_error_text(metadata(metrics={})) is None


def test_devices_and_the_message_for_a_missing_gpu(monkeypatch):
    from LandmarkDetectorLib import model as model_module
    from LandmarkDetectorLib.errors import InputError

    assert model_module.available_devices()["cpu"] == "CPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "cuda" not in model_module.available_devices() and model_module.resolve_device("auto") == "cpu"
    with pytest.raises(InputError, match="PyTorch sees no CUDA GPU; choose device 'cpu' or 'auto'"):
        model_module.resolve_device("cuda")
    monkeypatch.setattr(model_module.importlib.util, "find_spec", lambda name: None)
    assert model_module.available_devices() == {}


def test_network_runs_on_its_cpu_threads_and_restores_torchs(tmp_path):
    path = tmp_path / "m.pt"
    save_model(HeatmapUNet(len(NAMES), levels=(8, 16, 16)), metadata(), path)
    model = load_model(path)
    network, seen = model.module, []

    def recording(x):
        seen.append(torch.get_num_threads())
        return network(x)

    model.module = recording
    inputs = np.zeros((1, 3, SPEC.height, SPEC.width), np.float32)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.predict(inputs)
        model.cpu_threads = None
        model.predict(inputs)
        assert seen == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize(("platform", "environment", "expected"), [
    ("linux", {}, "~/.local/share/LandmarkDetector/models"),
    ("linux", {"XDG_DATA_HOME": "/data/me"}, "/data/me/LandmarkDetector/models"),
    ("linux", {"XDG_DATA_HOME": "relative/path"}, "~/.local/share/LandmarkDetector/models"),  # invalid: ignored
    ("darwin", {}, "~/Library/Application Support/LandmarkDetector/models"),
    ("win32", {"LOCALAPPDATA": "/Users/me/AppData/Local"}, "/Users/me/AppData/Local/LandmarkDetector/models"),
    ("win32", {}, "~/AppData/Local/LandmarkDetector/models"),  # LOCALAPPDATA unset: its usual place
    ("darwin", {"LANDMARK_DETECTOR_MODELS": "/shared/models"}, "/shared/models"),  # the override wins everywhere
])
def test_user_models_folder_follows_the_platform(monkeypatch, platform, environment, expected):
    for name in ("LANDMARK_DETECTOR_MODELS", "XDG_DATA_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert user_models_dir() == Path(os.path.expanduser(expected))


def test_metadata_is_stored_as_indented_json_with_sorted_keys():
    """Guards the stored text: readable in the archive, and the same bytes for the same metadata."""
    lines = metadata().to_json().splitlines()
    assert lines[:3] == ["{", '  "architecture": "heatmap-unet",', '  "canvas": {']
    keys = [line.split('"')[1] for line in lines if line.startswith('  "')]
    assert keys == sorted(keys) and len(keys) == 19


def test_metadata_without_the_optional_fields_gets_their_defaults():
    """Guards the defaults of a bundle written with only the required fields (format, name, landmarks, canvas,
    projection): they must be ModelMetadata's own."""
    values = json.loads(metadata().to_json())
    for optional in ("confidence_threshold", "mirror_tolerance_mm", "depth_fractions", "surface_extremes", "onto_skin",
                     "limb_tips", "landmark_edge_margins_mm", "architecture", "description", "training", "metrics"):
        del values[optional]
    expected = ModelMetadata(name="test", landmarks=NAMES, canvas=SPEC,
                             projection=ProjectionConfig(table_removal_mm=10.0))
    assert ModelMetadata.from_json(json.dumps(values)) == expected


@pytest.mark.parametrize("text", ['[1, 2]', '"landmark-detector-model"',
                                  json.dumps({**json.loads(metadata().to_json()), "format": "other-model"})],
                         ids=["a list", "a string", "another format"])
def test_metadata_of_another_kind_is_refused_by_its_format_tag(text):
    """Guards the format check: JSON that is not an object, or one with another format tag, is not a bundle's."""
    with pytest.raises(ModelError, match="^model is not a LandmarkDetector model bundle"):
        ModelMetadata.from_json(text)


def test_save_model_refuses_to_replace_a_file_unless_asked(tmp_path):
    """Guards save_model's overwrite default (False): an existing file is kept."""
    path = tmp_path / "m.pt"
    path.write_bytes(b"OLD")
    with pytest.raises(FileExistsError):
        save_model(HeatmapUNet(len(NAMES), levels=(8, 16, 16)), metadata(), path)
    assert path.read_bytes() == b"OLD"
    save_model(HeatmapUNet(len(NAMES), levels=(8, 16, 16)), metadata(), path, overwrite=True)
    assert read_metadata(path) == metadata()


def test_a_loaded_model_is_frozen_for_inference_and_is_already_on_its_device(tmp_path):
    """Guards load_model's optimization (weights folded into constants) and LandmarkModel.to on the same device."""
    path = tmp_path / "m.pt"
    save_model(HeatmapUNet(len(NAMES), levels=(8, 16, 16)), metadata(), path)
    model = load_model(path, device="cpu")
    assert list(model.module.parameters()) == []
    assert model.to("cpu") is model


def test_predict_takes_float64_canvases_too():
    """Guards predict's conversion to float32: a float64 input gives the float32 input's outputs."""
    network = HeatmapUNet(len(NAMES), levels=(8, 16, 16)).eval()
    model = LandmarkModel(metadata=metadata(), module=torch.jit.script(network), path=Path("m.pt"))
    x = np.random.default_rng(1).normal(size=(1, 3, 64, 32))
    for single, double in zip(model.predict(x.astype(np.float32)), model.predict(x), strict=True):
        np.testing.assert_array_equal(single, double)


def test_a_model_on_another_device_gets_its_input_there_and_leaves_the_cpu_threads_alone():
    """Guards predict's and the output check's device handling, with torch's "meta" device standing in for a GPU:
    the input goes to the model's device, and torch's CPU thread count is set only for a CPU model."""
    seen = []

    def network(x):
        seen.append((x.device.type, torch.get_num_threads()))
        n = len(NAMES)
        return torch.zeros(x.shape[0], n, 2), torch.zeros(x.shape[0], n), torch.zeros(x.shape[0], n)

    model = LandmarkModel(metadata=metadata(), module=network, path=Path("m.pt"), device="meta", cpu_threads=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.predict(np.zeros((1, 3, 64, 32), np.float32))
        _check_outputs(model)
    finally:
        torch.set_num_threads(previous)
    assert seen == [("meta", 2), ("meta", 2)]


def test_device_names_with_a_gpu(monkeypatch):
    """Guards resolve_device when CUDA is present: "auto" picks it, "cuda" and "cuda:N" are kept, others refused."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [resolve_device(d) for d in ("auto", "cuda", "cuda:1", "cpu")] == ["cuda", "cuda", "cuda:1", "cpu"]
    for wrong in ("gpu", "CUDA", "cpu:0"):
        with pytest.raises(InputError, match=f"^device must be auto, cpu or cuda, got '{wrong}'.$"):
            resolve_device(wrong)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="^device 'cuda' was requested but PyTorch sees no CUDA GPU; choose device "
                                         "'cpu' or 'auto'.$"):
        resolve_device("cuda")


def test_a_bundled_model_whose_name_has_a_space_is_checked_by_its_whole_name(tmp_path, monkeypatch):
    """Guards the SHA256SUMS parsing: a line is the digest, then the file name, which may hold spaces."""
    bundled_with_checksum(tmp_path, monkeypatch, "demo model.pt")
    assert load_model("demo model").metadata.landmarks == NAMES


class AnInteger(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> int:
        return 3


def test_refuses_a_network_whose_output_is_not_a_tensor_or_a_tuple(tmp_path):
    """Guards the message for an output that is neither a tuple nor a tensor (it has no shape to name)."""
    with pytest.raises(ModelError, match=r"outputs one int do not match its 3 landmarks"):
        load_model(saved(tmp_path, network=AnInteger()))


def test_saving_a_model_hides_only_torchs_deprecation_warning(tmp_path, monkeypatch):
    """Guards save_model's warning filter: TorchScript's deprecation is silenced, any other warning is not."""
    real_save = torch.jit.save

    def warning_save(*args, **kwargs):
        warnings.warn("TorchScript is deprecated", DeprecationWarning, stacklevel=2)
        warnings.warn("something else", UserWarning, stacklevel=2)
        return real_save(*args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(HeatmapUNet(len(NAMES), levels=(8, 16, 16)))  # torch.jit.script warns too
    monkeypatch.setattr(torch.jit, "save", warning_save)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_model(scripted, metadata(), tmp_path / "m.pt")
    assert [str(w.message) for w in caught] == ["something else"]


def test_loading_asks_torch_for_the_models_device_and_hides_only_its_deprecation_warning(tmp_path, monkeypatch):
    """Guards load_model's call of torch.jit.load: the weights are mapped to the device asked for (on a GPU machine
    the bundle's CPU weights must land on the GPU), and only TorchScript's deprecation warning is silenced."""
    path = tmp_path / "m.pt"
    save_model(HeatmapUNet(len(NAMES), levels=(8, 16, 16)), metadata(), path)
    real_load, devices = torch.jit.load, []

    def recording_load(file, map_location=None, **kwargs):
        devices.append(map_location)
        warnings.warn("TorchScript is deprecated", DeprecationWarning, stacklevel=2)
        warnings.warn("something else", UserWarning, stacklevel=2)
        return real_load(file, map_location=map_location, **kwargs)

    monkeypatch.setattr(torch.jit, "load", recording_load)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model(path, device="cpu")
    assert devices == ["cpu"]
    assert [str(w.message) for w in caught if not str(w.message).startswith("`torch.jit")] == ["something else"]


def test_metadata_bounds_on_the_threshold_and_the_mirror_tolerance():
    """Guards the range checks: a threshold anywhere in [0, 1] (both ends included), a tolerance any positive finite
    number of mm (below 1 mm too); anything else refused by name."""
    for threshold in (0.0, 1.0):
        assert ModelMetadata.from_json(metadata(confidence_threshold=threshold).to_json()).confidence_threshold \
            == threshold
    for threshold in (-0.01, 1.01, 1.5):
        with pytest.raises(ModelError, match=f"confidence_threshold must be in \\[0, 1\\], got {threshold}"):
            ModelMetadata.from_json(metadata(confidence_threshold=threshold).to_json())
    assert ModelMetadata.from_json(metadata(mirror_tolerance_mm=0.5).to_json()).mirror_tolerance_mm == 0.5
    for tolerance in (0.0, -3.0, float("inf")):
        with pytest.raises(ModelError, match="mirror_tolerance_mm must be a positive number of mm or null"):
            ModelMetadata.from_json(metadata(mirror_tolerance_mm=tolerance).to_json())


def test_found_rule_ranges_give_one_value_or_the_range_as_help_and_panel_show_them():
    assert metadata().found_rule_ranges() == ("0.62", "25")  # 0.625 rounds half to even
    per_landmark = metadata(landmark_thresholds={"A": 0.05}, landmark_mirror_tolerances_mm={"C": 100.0})
    assert per_landmark.found_rule_ranges() == ("0.05-0.62", "25-100")
    assert metadata(mirror_tolerance_mm=None, landmark_thresholds={"B": 0.9}).found_rule_ranges() == ("0.62-0.90", None)
    assert per_landmark.rules_differ_by_landmark()
    assert metadata(landmark_mirror_tolerances_mm={"C": 5.0}).rules_differ_by_landmark()
    alike = metadata(landmark_thresholds=dict.fromkeys("ABC", 0.625), landmark_mirror_tolerances_mm={"A": 25.0})
    assert not alike.rules_differ_by_landmark() and not metadata().rules_differ_by_landmark()


def test_per_landmark_thresholds_and_tolerances_round_trip_and_replace_the_models():
    own = metadata(landmark_thresholds={"A": 0.25}, landmark_mirror_tolerances_mm={"B": 60.0, "C": 2.5})
    read = ModelMetadata.from_json(own.to_json())
    assert read.landmark_thresholds == {"A": 0.25} and read.landmark_mirror_tolerances_mm == {"B": 60.0, "C": 2.5}
    thresholds, tolerances = read.found_rules()
    assert thresholds.tolist() == [0.25, 0.625, 0.625] and tolerances.tolist() == [25.0, 60.0, 2.5]
    thresholds, tolerances = read.found_rules(confidence_threshold=0.9, mirror_tolerance_mm=7.0)  # the caller's
    assert thresholds.tolist() == [0.9] * 3 and tolerances.tolist() == [7.0] * 3
    thresholds, tolerances = read.found_rules(landmarks=("A", "Z"))  # a name the model lacks: its model-wide values
    assert thresholds.tolist() == [0.25, 0.625] and tolerances.tolist() == [25.0, 25.0]
    assert metadata(mirror_tolerance_mm=None).found_rules()[1] is None
    values = json.loads(metadata().to_json())
    del values["landmark_thresholds"], values["landmark_mirror_tolerances_mm"]  # a bundle from before them
    assert ModelMetadata.from_json(json.dumps(values)).found_rules()[0].tolist() == [0.625] * 3
    for bad in ({"D": 0.5}, {"A": 1.5}, {"A": -0.1}):
        with pytest.raises(ModelError, match="landmark_thresholds must map the model's landmarks to probabilities"):
            ModelMetadata.from_json(metadata(landmark_thresholds=bad).to_json())
    for bad, changes in (({"D": 5.0}, {}), ({"A": 0.0}, {}), ({"A": float("inf")}, {}),
                         ({"A": 5.0}, {"mirror_tolerance_mm": None})):
        with pytest.raises(ModelError, match="landmark_mirror_tolerances_mm must map the model's landmarks to pos"):
            ModelMetadata.from_json(metadata(landmark_mirror_tolerances_mm=bad, **changes).to_json())


def test_edge_margins_round_trip_default_to_zero_and_refuse_bad_values():
    read = ModelMetadata.from_json(metadata(landmark_edge_margins_mm={"B": 5.0, "C": 0.0}).to_json())
    assert read.landmark_edge_margins_mm == {"B": 5.0, "C": 0.0}
    assert read.edge_margins_mm().tolist() == [0.0, 5.0, 0.0]
    for bad in ({"D": 5.0}, {"A": -1.0}, {"A": float("inf")}, {"A": float("nan")}):
        with pytest.raises(ModelError, match="landmark_edge_margins_mm must map the model's landmarks to numbers"):
            ModelMetadata.from_json(metadata(landmark_edge_margins_mm=bad).to_json())


def test_depth_fractions_must_name_the_models_landmarks_with_fractions_from_0_to_1():
    """Guards the depth fractions' check: both ends of [0, 1] kept; another landmark, a fraction outside [0, 1] or
    NaN, or something that is not a mapping refused by name."""
    fractions = {"B": 0.0, "C": 1.0}
    assert ModelMetadata.from_json(metadata(depth_fractions=fractions).to_json()).depth_fractions == fractions
    for bad in ({"D": 0.5}, {"A": -0.01}, {"B": 1.01}, {"C": float("nan")}):
        with pytest.raises(ModelError, match="depth_fractions must map the model's landmarks to fractions in"):
            ModelMetadata.from_json(metadata(depth_fractions=bad).to_json())
    values = json.loads(metadata().to_json())
    for bad in ([0.5], "A", {"A": "half"}):
        with pytest.raises(ModelError, match="invalid metadata"):
            ModelMetadata.from_json(json.dumps({**values, "depth_fractions": bad}))


def test_surface_extremes_name_the_models_other_landmarks_with_directions_scaled_to_unit_length():
    """Guards the surface extremes' check: directions scaled to unit length; another landmark, one that also has a
    depth fraction, or a direction that is not three finite numbers, not all zero, refused."""
    read = ModelMetadata.from_json(metadata(surface_extremes={"A": (0.0, 3.0, -4.0), "C": (0, 0, 2)}).to_json())
    assert read.surface_extremes == {"A": (0.0, 0.6, -0.8), "C": (0.0, 0.0, 1.0)}
    for bad in ({"D": (0, 0, 1)}, {"B": (0, 0, 1)}):
        with pytest.raises(ModelError, match="surface_extremes must name the model's skin landmarks, none of them in"):
            ModelMetadata.from_json(metadata(surface_extremes=bad).to_json())
    values = json.loads(metadata().to_json())
    for bad in ({"A": [0, 0]}, {"A": [0, 0, 0]}, {"A": [0, float("inf"), 1]}, {"A": "up"}, [[0, 0, 1]]):
        with pytest.raises(ModelError, match="invalid metadata"):
            ModelMetadata.from_json(json.dumps({**values, "surface_extremes": bad}))


def test_limb_tips_map_the_models_skin_landmarks_to_another_of_its_landmarks():
    """Guards the check of the limb tips: read back; a tip or a root that is not the model's landmark, a tip placed at
    a depth fraction (a joint centre), or a tip that is its own root, refused."""
    assert ModelMetadata.from_json(metadata(limb_tips={"C": "B", "A": "B"}).to_json()).limb_tips == {"C": "B",
                                                                                                       "A": "B"}
    for bad, message in (({"D": "A"}, "limb_tips must name the model's skin landmarks"),
                         ({"B": "A"}, "limb_tips must name the model's skin landmarks"),
                         ({"C": "D"}, "limb_tips must map each tip to another of the model's landmarks"),
                         ({"C": "C"}, "limb_tips must map each tip to another of the model's landmarks")):
        with pytest.raises(ModelError, match=message):
            ModelMetadata.from_json(metadata(limb_tips=bad).to_json())


def test_onto_skin_names_the_models_landmarks_that_are_not_joint_centres():
    """Guards the check of the landmarks moved onto the skin: read back in order; another landmark, or one placed at a
    depth fraction (a joint centre, inside the body), refused."""
    assert ModelMetadata.from_json(metadata(onto_skin=("C", "A")).to_json()).onto_skin == ("C", "A")
    for bad in (("D",), ("A", "B")):
        with pytest.raises(ModelError, match="onto_skin must name the model's skin landmarks, none of them in"):
            ModelMetadata.from_json(metadata(onto_skin=bad).to_json())


def test_invalid_metadata_names_the_error():
    """Guards the message for metadata missing a required field: the kind of error and the field."""
    text = metadata().to_json().replace('"landmarks"', '"landmarkz"')
    with pytest.raises(ModelError, match=rf"^m.pt: invalid metadata in {METADATA_FILE} \(KeyError: 'landmarks'\)\.$"):
        ModelMetadata.from_json(text, source="m.pt")


def test_a_user_model_with_a_bundled_models_name_is_listed_as_user_name(tmp_path, monkeypatch):
    """Guards available_models: a user model never hides the bundled model of the same name."""
    from LandmarkDetectorLib.model import available_models

    bundled = bundled_with_checksum(tmp_path, monkeypatch, "demo.pt")
    (tmp_path / "user").mkdir()
    mine = saved(tmp_path / "user", name="demo.pt")
    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path / "user"))
    assert available_models() == {"demo": bundled, "user:demo": mine}


def test_a_torchscript_error_is_reported_by_its_first_line(tmp_path, monkeypatch):
    """Guards load_model's message when torch cannot load a bundle: the path and the first line of torch's error."""
    path = saved(tmp_path)

    def failing_load(*args, **kwargs):
        raise RuntimeError("the first line\nthe second line")

    monkeypatch.setattr(torch.jit, "load", failing_load)
    with pytest.raises(ModelError) as caught:
        load_model(path)
    assert str(caught.value) == f"{path} could not be loaded as TorchScript (the first line)."


def test_a_loaded_model_knows_its_file_and_the_output_check_names_it(tmp_path):
    """Guards the path given to LandmarkModel by load_model: kept on the model (LandmarkModel.to loads it again from
    there) and named by the output check's message."""
    path = saved(tmp_path)
    assert load_model(path, device="cpu").path == path
    wrong = saved(tmp_path, network=HeatmapUNet(5, levels=(8, 16, 16)), name="five.pt")
    with pytest.raises(ModelError, match=f"^{re.escape(str(wrong))}: outputs"):
        load_model(wrong)


def test_a_model_loaded_for_a_gpu_is_checked_and_kept_on_the_gpu(tmp_path, monkeypatch):
    """Guards the device given to LandmarkModel by load_model (torch.cuda faked; no GPU needed): the output check
    and the model run on the device asked for, not on LandmarkModel's default CPU."""
    from LandmarkDetectorLib import model as model_module

    path = saved(tmp_path)
    real_load, checked = torch.jit.load, []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.jit, "load", lambda file, map_location=None: real_load(file, map_location="cpu"))
    monkeypatch.setattr(model_module, "_check_outputs", lambda model: checked.append(model.device))
    assert load_model(path, device="cuda").device == "cuda"
    assert checked == ["cuda"]


def test_a_file_in_the_working_folder_is_a_model_by_its_bare_name(tmp_path, monkeypatch):
    """Guards model_file: an existing file given without a folder and without the .pt suffix is taken as a path, and
    a name that is no file but has a folder or the suffix is a path too (read_metadata then says it is missing)."""
    from LandmarkDetectorLib.model import model_file

    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    saved(tmp_path, name="bundle")
    assert model_file("bundle") == Path("bundle")
    assert load_model("bundle").metadata.landmarks == NAMES
    for missing in ("missing.pt", os.path.join("folder", "missing")):
        assert model_file(missing) == Path(missing)
        with pytest.raises(ModelError, match="does not exist"):
            load_model(missing)


def test_unknown_name_says_when_no_model_is_available(tmp_path, monkeypatch):
    """Guards model_file's message when neither bundled nor user models exist."""
    from LandmarkDetectorLib import model as model_module

    monkeypatch.setattr(model_module, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path / "user"))
    with pytest.raises(ModelError, match=r"^unknown model 'knees'; available: none \(or give a file path\)\.$"):
        model_module.model_file("knees")


def test_metadata_errors_name_the_model_file(tmp_path):
    """Guards read_metadata's source for the metadata messages: the bundle's path."""
    path = saved(tmp_path, extra={METADATA_FILE: "{oops"})
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: {METADATA_FILE} is not valid JSON"):
        read_metadata(path)


def test_predict_gives_the_network_the_canvases_it_is_given():
    """Guards predict's conversion of its input: the network gets the canvases themselves (a mutant fed it a
    one-element NaN array, on which the optimized network crashed inside torch)."""
    seen = []

    def network(x):
        seen.append(x.numpy().copy())
        n = len(NAMES)
        return torch.zeros(x.shape[0], n, 2), torch.zeros(x.shape[0], n), torch.zeros(x.shape[0], n)

    model = LandmarkModel(metadata=metadata(), module=network, path=Path("m.pt"))
    x = np.random.default_rng(2).normal(size=(2, 3, 64, 32)).astype(np.float32)
    model.predict(x)
    np.testing.assert_array_equal(seen[0], x)
