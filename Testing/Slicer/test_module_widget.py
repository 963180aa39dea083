"""The panel without a Slicer application (stand-ins from standins.py, real MRML from slicer-core): the module file
and LandmarkDetectorSlicer import without torch, the .ui file and the code agree, the parameter node lives in the
scene, the Detect button follows the inputs, the click path (and the module's own self-test) runs up to the Qt calls,
and Reload imports both packages afresh."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import sys
import types
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import slicer
import standins
from analytic_model import save_confidence_model, save_side_guess_model

from LandmarkDetectorLib import InputError, detect_landmarks, load_model, read_volume
from LandmarkDetectorLib.model import BUNDLED_DIR, USER_MODELS_ENV, default_model, user_models_dir
from LandmarkDetectorLib.results import result_rows
from LandmarkDetectorLib.synthetic.dataset import synthesize_case

from phantoms import make_ijk_to_ras, spheres_volume

UI_FILE = standins.MODULE_FILE.parent / "Resources" / "UI" / "LandmarkDetector.ui"
SLICER_FILES = [standins.MODULE_FILE, *sorted((standins.MODULE_FILE.parent / "LandmarkDetectorSlicer").glob("*.py"))]
SEED = 515_151
_MODELS = {}


def cached_load_model(name, device="cpu"):
    """load_model, once per test session (loading optimizes the network: seconds)."""
    key = (str(name), device)
    if key not in _MODELS:
        _MODELS[key] = load_model(name, device)
    return _MODELS[key]


@pytest.fixture
def module(monkeypatch):
    module = standins.import_module_file(monkeypatch)
    monkeypatch.setattr(sys.modules["LandmarkDetectorSlicer.logic"], "load_model", cached_load_model)
    markups_logic = slicer.vtkSlicerMarkupsLogic()
    markups_logic.SetMRMLScene(slicer.mrmlScene)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
        markups=types.SimpleNamespace(logic=lambda: markups_logic)), raising=False)
    return module


@pytest.fixture
def widget(module):
    widget = module.LandmarkDetectorWidget()
    widget.setup()
    yield widget
    widget.cleanup()  # as Slicer does when the panel is destroyed


def test_module_file_loads_without_torch_and_describes_the_module(module, monkeypatch, tmp_path):
    top_level = set()
    for path in SLICER_FILES:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                top_level.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                top_level.add(node.module)
    assert not {name for name in top_level if name.startswith(("torch", "LandmarkDetectorLib.training"))}
    monkeypatch.setattr(slicer.app, "slicerUserSettingsFilePath", str(tmp_path / "Slicer.ini"), raising=False)
    monkeypatch.delenv(USER_MODELS_ENV, raising=False)
    parent = types.SimpleNamespace()
    module.LandmarkDetector(parent)
    assert parent.title == "Landmark Detector" and "Riegler" in parent.acknowledgementText
    assert "Detect landmarks" in parent.helpText and "Sample Data" in parent.helpText
    assert "http" not in parent.helpText  # no link to a web page that may not exist
    assert user_models_dir() == tmp_path / "LandmarkDetector" / "models"  # beside Slicer's settings


def test_ui_file_and_code_agree(module):
    root = ET.parse(UI_FILE).getroot()
    names = {element.get("name") for element in root.iter("widget")}
    used = {name for path in SLICER_FILES for name in re.findall(r"\.ui\.(\w+)", path.read_text(encoding="utf-8"))}
    assert used - names == set(), "widgets used in the module's code but missing in the .ui file"
    bound = {p.find("string").text for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    parameters = set(sys.modules["LandmarkDetectorSlicer.parameters"].LandmarkDetectorParameterNode.allParameters)
    assert bound - parameters == set(), "SlicerParameterName values that are no parameter"
    assert parameters - bound == {"model", "device"}, "parameters neither bound in the .ui nor set by the code"


def test_parameter_node_is_stored_in_the_scene(module):
    logic = module.LandmarkDetectorLogic()
    parameters = logic.getParameterNode()
    assert (parameters.model, parameters.device, parameters.useThreshold, parameters.finetuneSteps) == (
        "", "auto", False, 300)
    volume = slicer.util.addVolumeFromArray(np.zeros((4, 5, 6), np.int16), name="CT")
    parameters.inputVolume = volume
    parameters.model = "hand-mr"
    node = parameters.parameterNode
    assert isinstance(node, slicer.vtkMRMLScriptedModuleNode) and node.GetScene() is slicer.mrmlScene
    assert node.GetNodeReferenceID("inputVolume") == volume.GetID() and node.GetParameter("model") == "hand-mr"
    again = logic.getParameterNode()
    assert again.parameterNode is node and again.inputVolume.GetID() == volume.GetID()


def test_detect_button_follows_the_inputs(module, widget):
    parameters = widget._parameterNode
    button = widget.ui.detectButton
    assert not button.enabled and button.toolTip == "Select an input volume."
    assert parameters.model == default_model()
    assert widget._deviceItems[widget.ui.deviceComboBox.currentIndex] == "auto"

    volume = slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.int16), name="CT")
    parameters.inputVolume = volume
    parameters.model = "hand-mr"
    assert button.enabled
    assert "ThumbTip" in widget.ui.modelInfoLabel.text
    assert "Measured 3D error (mean / median):</b> real-anatomy phantoms " in widget.ui.modelInfoLabel.text
    assert widget._modelItems[widget.ui.modelComboBox.currentIndex] == "hand-mr"
    hand = cached_load_model("hand-mr").metadata  # unticked Advanced fields show the model's settings
    assert parameters.tableRemovalMm == hand.projection.table_removal_mm
    assert parameters.confidenceThreshold == hand.confidence_threshold
    assert "Calibrated per landmark" not in widget.ui.modelInfoLabel.text  # the hand model has one threshold

    parameters.inputVolume = slicer.util.addVolumeFromArray(np.ones((1, 30, 40), np.int16), name="Slice")
    assert not button.enabled and "2D image" in button.toolTip
    parameters.inputVolume = slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.uint8), name="Labels",
                                                            nodeClassName="vtkMRMLLabelMapVolumeNode")
    assert not button.enabled and "label map" in button.toolTip
    warp = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", "Warp")
    volume.SetAndObserveTransformNodeID(warp.GetID())
    parameters.inputVolume = volume
    assert not button.enabled and "non-linear" in button.toolTip
    volume.SetAndObserveTransformNodeID(None)
    parameters.inputVolume = None
    parameters.inputVolume = volume
    assert button.enabled

    parameters.model = "no-such-model"
    assert not button.enabled and "no-such-model" in button.toolTip
    assert "no-such-model" in widget.ui.modelInfoLabel.text
    assert not widget.ui.finetuneButton.enabled


def cut_hand():
    """A synthetic hand MR cut across the fingers, so that some landmarks are not found."""
    case = synthesize_case("hand", SEED, 0)
    keep = case.voxels_kji.shape[1] * 55 // 100
    return np.ascontiguousarray(case.voxels_kji[:, :keep]), case.ijk_to_ras


def test_detect_click_path(module, widget):
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.model = "hand-mr"
    parameters.device = "cpu"
    parameters.showProjection = True
    assert widget.ui.detectButton.enabled, widget.ui.detectButton.toolTip

    widget.ui.detectButton.click()
    first = slicer.mrmlScene.GetFirstNodeByName("Palm landmarks")
    assert first is not None and parameters.outputPoints is None
    assert slicer.mrmlScene.GetFirstNodeByName("Palm projection") is not None
    assert widget.ui.resultsTable.rowCount == 5
    def rows():
        return result_rows(widget._landmarks, module.LandmarkDetectorLogic.pointListFromNode(first))

    levels = [row.level for row in rows()]
    assert "not_found" in levels and "found" in levels, rows()
    assert [row.name for row in rows()] == [first.GetNthControlPointLabel(i) for i in range(5)]
    unplaced = levels.index("not_found")
    assert rows()[unplaced].cells()[2:] == ["", "", ""]

    widget.ui.resultsTable.emit("cellClicked(int,int)", unplaced, 0)
    assert first.GetControlPointPlacementStartIndex() == unplaced
    selection = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSelectionNode")
    assert selection.GetActivePlaceNodeID() == first.GetID()
    widget.ui.resultsTable.emit("cellClicked(int,int)", levels.index("found"), 0)  # jumps slice views (none here)

    first.SetNthControlPointPosition(unplaced, 1.0, 2.0, 3.0)  # the user places it: the table follows
    placed = rows()[unplaced]
    assert placed.level == "placed" and placed.cells()[2:] == ["1.0", "2.0", "3.0"]

    positions = slicer.util.arrayFromMarkupsControlPoints(first).copy()
    widget.ui.detectButton.click()
    assert slicer.mrmlScene.GetFirstNodeByName("Palm landmarks_1") is not None
    np.testing.assert_array_equal(slicer.util.arrayFromMarkupsControlPoints(first), positions)


def test_module_self_test_runs(module, widget, monkeypatch):
    monkeypatch.setattr(slicer.util, "selectModule", lambda name: None)
    monkeypatch.setattr(slicer.util, "getModuleWidget", lambda name: widget)
    module.LandmarkDetectorTest().runTest()


def test_finetune_section(module, widget, monkeypatch, tmp_path):
    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path))
    parameters = widget._parameterNode
    parameters.model = "hand-mr"
    button = widget.ui.finetuneButton
    for index in range(2):
        volume = slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.int16), name=f"CT {index}")
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"CT {index} points")
        widget.ui.caseVolumeSelector.currentNode = lambda volume=volume: volume
        widget.ui.casePointsSelector.currentNode = lambda points=points: points
        assert not button.enabled
        widget.ui.addCaseButton.click()
    assert button.enabled, button.toolTip

    def finetune(cases, model, name, steps, folds, overwrite, progress, shouldCancel):
        assert [c[0].GetName() for c in cases] == ["CT 0", "CT 1"] and (model, name) == ("hand-mr", "my-model")
        path = tmp_path / f"{name}.pt"
        path.write_bytes(BUNDLED_DIR.joinpath("hand-mr.pt").read_bytes())
        return path, "| landmark | n |"

    monkeypatch.setattr(widget.logic, "finetune", finetune)
    button.click()
    assert widget.ui.finetuneReportBrowser.markdown.startswith("| landmark | n |")
    assert parameters.model == "my-model" and "my-model" in widget._modelItems

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "scipy" else find_spec(name, *args))
    widget._checkCanApply()
    assert not button.enabled and "needs SciPy" in button.toolTip
    with pytest.raises(InputError, match="needs SciPy"):
        module.LandmarkDetectorLogic().finetune([], "hand-mr", "other")


def test_reload_imports_both_packages_afresh(module, widget, monkeypatch):
    """onReload forgets LandmarkDetectorLib and LandmarkDetectorSlicer, so that Slicer's re-import of the module file
    (here the stand-in's) loads each module anew, bound to the new modules it imports."""
    packages = ("LandmarkDetectorLib", "LandmarkDetectorSlicer")
    loaded = {name: m for name, m in sys.modules.items() if name.split(".")[0] in packages}
    reloaded = []
    monkeypatch.setattr(standins.ScriptedLoadableModuleWidget, "onReload",
                        lambda self: reloaded.append(standins.exec_module_file()), raising=False)
    try:
        widget.onReload()
        assert reloaded and reloaded[0].LandmarkDetectorLogic is not module.LandmarkDetectorLogic
        for name in ("LandmarkDetectorLib.model", "LandmarkDetectorSlicer.widget"):
            assert sys.modules[name] is not loaded[name], name
        logic = sys.modules["LandmarkDetectorSlicer.logic"]
        assert logic.detect_landmarks is sys.modules["LandmarkDetectorLib.pipeline"].detect_landmarks
        assert logic.InputError is sys.modules["LandmarkDetectorLib.errors"].InputError
    finally:  # the other tests keep the modules they imported
        for name in [n for n in sys.modules if n.split(".")[0] in packages]:
            del sys.modules[name]
        sys.modules.update(loaded)


def test_panel_opens_without_torch_and_a_broken_torch_is_reported(module, monkeypatch):
    """Opening the panel asks PyTorch nothing (importing it and initialising CUDA takes seconds); the first run does,
    and a PyTorch that fails to load is an error message, not a blank panel."""
    widget_module = sys.modules["LandmarkDetectorSlicer.widget"]
    asked = []

    def broken_torch():
        asked.append(True)
        raise OSError("libtorch_cpu.so: cannot open shared object file")

    monkeypatch.setattr(widget_module, "available_devices", broken_torch)
    errors = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: errors.append(text))
    widget = module.LandmarkDetectorWidget()
    widget.setup()
    assert not asked and widget._deviceItems == ["auto", "cpu", "cuda"]
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.model = "hand-mr"
    widget.ui.detectButton.click()
    assert asked and len(errors) == 1 and "could not be loaded" in errors[0] and "libtorch_cpu" in errors[0]
    assert slicer.mrmlScene.GetFirstNodeByName("Palm landmarks") is None
    monkeypatch.setattr(widget_module, "available_devices", lambda: {"cpu": "CPU", "cuda": "NVIDIA H200"})
    widget.ui.detectButton.click()  # PyTorch works now: its devices are listed
    assert widget._deviceItems == ["auto", "cpu", "cuda"] and "NVIDIA H200" in widget.ui.deviceComboBox.toolTip
    widget.cleanup()


class RecordingDialog(standins.ProgressDialog):
    """A progress dialog that records its window modality."""

    modality = None

    def setWindowModality(self, modality) -> None:
        self.modality = modality


def test_a_run_blocks_a_second_run_and_a_scene_close_cancels_it(module, widget, monkeypatch):
    dialogs = []
    qt = sys.modules["LandmarkDetectorSlicer.widget"].qt
    monkeypatch.setattr(qt, "Qt", types.SimpleNamespace(ApplicationModal="application-modal", WaitCursor=None),
                        raising=False)
    monkeypatch.setattr(slicer.util, "createProgressDialog",
                        lambda *args, **kwargs: dialogs.append(RecordingDialog()) or dialogs[-1])
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.model = "hand-mr"
    logic, calls = widget.logic, []
    detect = logic.detectLandmarks

    def detect_and_click_again(*args, progress, shouldCancel, **kwargs):
        calls.append("detect")
        widget.ui.detectButton.click()  # ignored while this one runs
        widget.ui.finetuneButton.click()
        assert not shouldCancel()
        slicer.mrmlScene.InvokeEvent(slicer.mrmlScene.StartCloseEvent)  # the scene closes under the run
        assert shouldCancel()
        return detect(*args, progress=progress, shouldCancel=shouldCancel, **kwargs)

    monkeypatch.setattr(logic, "detectLandmarks", detect_and_click_again)
    monkeypatch.setattr(logic, "finetune", lambda *args, **kwargs: calls.append("finetune"))
    widget.ui.detectButton.click()
    assert calls == ["detect"] and len(dialogs) == 1 and dialogs[0].modality == "application-modal"
    assert slicer.mrmlScene.GetFirstNodeByName("Palm landmarks") is None  # cancelled: nothing added
    assert widget._running == ""


def test_wait_cursor_only_around_work_without_questions(module, widget, monkeypatch, tmp_path):
    """No dialog that asks something (confirm, progress with Cancel) appears under the wait cursor."""
    waiting = []

    class Wait:
        def __enter__(self):
            waiting.append(True)

        def __exit__(self, *exc):
            waiting.pop()

    real_try = slicer.util.tryWithErrorDisplay

    def try_with_error_display(message=None, show=True, waitCursor=False):
        return Wait() if waitCursor else real_try(message, show=show)

    def ask(*args, **kwargs):
        assert not waiting, "a question under the wait cursor"
        return True

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", try_with_error_display)
    monkeypatch.setattr(slicer.util, "WaitCursor", Wait)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", ask)
    monkeypatch.setattr(slicer.util, "createProgressDialog", lambda *a, **k: ask() and standins.ProgressDialog())
    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path))
    parameters = widget._parameterNode
    volume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.inputVolume, parameters.model = volume, "hand-mr"
    parameters.outputPoints = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Mine")
    parameters.outputPoints.AddControlPoint(1.0, 2.0, 3.0)  # replacing it asks first
    widget.ui.detectButton.click()
    assert parameters.outputPoints.GetNumberOfControlPoints() == 5
    (tmp_path / "my-model.pt").write_bytes(BUNDLED_DIR.joinpath("hand-mr.pt").read_bytes())  # replacing it asks
    parameters.finetuneModelName = "my-model"
    widget._finetuneCases = [(volume.GetID(), parameters.outputPoints.GetID())] * 2
    monkeypatch.setattr(widget.logic, "finetune", lambda *args, **kwargs: (tmp_path / "my-model.pt", ""))
    widget.ui.finetuneButton.click()
    assert not waiting


def test_results_follow_the_points_by_label_after_reordering(module, widget):
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.model = "hand-mr"
    widget.ui.detectButton.click()
    points = slicer.mrmlScene.GetFirstNodeByName("Palm landmarks")
    unplaced = next(i for i in range(5) if points.GetNthControlPointPositionStatus(i) != points.PositionDefined)
    name = points.GetNthControlPointLabel(unplaced)
    points.SwapControlPoints(unplaced, 4 if unplaced != 4 else 0)  # the user reorders the points
    row = [r.name for r in widget._resultRows].index(name)
    assert widget._resultRows[row].level == "not_found"
    widget.ui.resultsTable.emit("cellClicked(int,int)", row, 0)
    assert points.GetNthControlPointLabel(points.GetControlPointPlacementStartIndex()) == name


def test_model_description_gives_the_ranges_of_the_per_landmark_calibration(module, widget):
    body = cached_load_model("wholebody-ct").metadata
    per_landmark = dataclasses.replace(body, confidence_threshold=0.8, mirror_tolerance_mm=7.5,
                                       landmark_thresholds={"HeadTop": 0.05},
                                       landmark_mirror_tolerances_mm={"KneeR": 100.0})
    text = widget._modelDescription("wholebody-ct", per_landmark)
    assert "Calibrated per landmark:</b> confidence threshold 0.05-0.80, mirror tolerance 7.5-100 mm" in text
    alike = dataclasses.replace(body, landmark_thresholds=dict.fromkeys(body.landmarks, body.confidence_threshold),
                                landmark_mirror_tolerances_mm=dict.fromkeys(body.landmarks, body.mirror_tolerance_mm))
    assert "Calibrated per landmark" not in widget._modelDescription("wholebody-ct", alike)  # one value: nothing to say


def test_model_card_link_names_a_file_that_ships(module, widget):
    widget._parameterNode.model = "hand-mr"
    link = re.search(r'href="([^"]+)"', widget.ui.modelInfoLabel.text)[1]
    assert link.startswith("file://") and Path(urllib.request.url2pathname(link[len("file://"):])).is_file()
    assert "github.com" not in widget.ui.modelInfoLabel.text


def test_sample_data_is_made_on_first_use(module, monkeypatch, tmp_path):
    registered = []
    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=types.SimpleNamespace(
        registerCustomSampleDataSource=lambda **kwargs: registered.append(kwargs))))
    monkeypatch.setattr(slicer.app, "cachePath", str(tmp_path), raising=False)
    loaded = []
    monkeypatch.setattr(slicer.util, "loadVolume", lambda path, properties: loaded.append((path, properties)))
    sampledata = sys.modules["LandmarkDetectorSlicer.sampledata"]
    sampledata.registerSampleData()
    assert [r["sampleName"] for r in registered] == ["LandmarkDetectorSyntheticCT", "LandmarkDetectorSyntheticHandMR"]
    hand = registered[1]
    hand["customDownloader"](types.SimpleNamespace())  # Sample Data calls it with the source
    path, properties = loaded[0]
    assert properties == {"name": "LandmarkDetectorSyntheticHandMR"} and Path(path).parent.parent == tmp_path
    volume = read_volume(path)
    assert volume.voxels_kji.ndim == 3
    landmarks = detect_landmarks(volume.voxels_kji, volume.ijk_to_ras, cached_load_model("hand-mr"), "cpu")
    assert landmarks.found.all()  # something to click "Detect landmarks" on
    modified = Path(path).stat().st_mtime_ns
    hand["customDownloader"](types.SimpleNamespace())
    assert loaded[1][0] == path and Path(path).stat().st_mtime_ns == modified  # made once, then read from the cache


def test_a_detection_that_looks_wrong_says_so_under_the_table(module, widget):
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.model = "wholebody-ct"  # a CT body model for a hand MR
    widget.ui.detectButton.click()
    label = widget.ui.resultsLabel.text
    assert "looks like MR" in label and "wholebody-ct is for CT" in label and "\n" not in label
    parameters.model = "hand-mr"
    widget.ui.detectButton.click()
    assert "looks like" not in widget.ui.resultsLabel.text


@pytest.fixture
def answer_cancel(monkeypatch):
    """Every confirmation dialog answers Cancel; the questions asked are recorded."""
    asked = []
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                        lambda text, *args, **kwargs: asked.append(text) or False)
    return asked


def test_cancelling_the_replacement_of_a_point_list_changes_nothing(module, widget, answer_cancel, monkeypatch):
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.model = "hand-mr"
    mine = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Mine")
    mine.AddControlPoint(1.0, 2.0, 3.0)
    parameters.outputPoints = mine
    ran = []
    monkeypatch.setattr(widget.logic, "detectLandmarks", lambda *args, **kwargs: ran.append(True))
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    widget.ui.detectButton.click()
    assert len(answer_cancel) == 1 and "Replace the 1 points of 'Mine'" in answer_cancel[0]
    assert not ran and slicer.mrmlScene.GetNumberOfNodes() == nodes
    assert mine.GetNumberOfControlPoints() == 1 and list(mine.GetNthControlPointPosition(0)) == [1.0, 2.0, 3.0]
    assert widget.ui.resultsTable.rowCount == 0


def test_cancelling_the_replacement_of_a_model_saves_nothing(module, widget, answer_cancel, monkeypatch, tmp_path):
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path))
    existing = tmp_path / "my-model.pt"
    existing.write_bytes(BUNDLED_DIR.joinpath("hand-mr.pt").read_bytes())
    before = existing.read_bytes()
    parameters = widget._parameterNode
    parameters.model, parameters.finetuneModelName = "hand-mr", "my-model"
    volume = slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.int16), name="CT")
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "CT points")
    widget._finetuneCases = [(volume.GetID(), points.GetID())] * 2
    ran = []
    monkeypatch.setattr(widget.logic, "finetune", lambda *args, **kwargs: ran.append(True))
    widget.ui.finetuneButton.click()
    assert len(answer_cancel) == 1 and "'my-model' exists" in answer_cancel[0]
    assert not ran and existing.read_bytes() == before and sorted(tmp_path.iterdir()) == [existing]
    assert parameters.model == "hand-mr"


def test_declining_to_install_pytorch_detects_nothing(module, widget, answer_cancel, monkeypatch):
    installs = []
    torch_logic = types.SimpleNamespace(torchInstalled=lambda: False,
                                        installTorch=lambda **kwargs: installs.append(kwargs))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=lambda: torch_logic))
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.model = "hand-mr"
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    widget.ui.detectButton.click()
    assert len(answer_cancel) == 1 and "Install it now" in answer_cancel[0]
    assert not installs and slicer.mrmlScene.GetNumberOfNodes() == nodes


class CancelledDialog(standins.ProgressDialog):
    """A progress dialog whose Cancel button was pressed."""

    wasCanceled = True


def test_cancel_in_the_progress_dialog_adds_nothing(module, widget, monkeypatch):
    monkeypatch.setattr(slicer.util, "createProgressDialog", lambda *args, **kwargs: CancelledDialog())
    messages = []
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda text, *args: messages.append(text))
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(*cut_hand(), "Palm")
    parameters.model = "hand-mr"
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    widget.ui.detectButton.click()
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes and messages == ["Cancelled; no landmarks added."]
    assert widget._running == ""


def ball_in_panel(widget, name: str, model: str):
    """A 20 mm ball in 2 mm voxels as the panel's input, detected with ``model`` on the CPU; the parameter node."""
    shape = (31, 33, 35)
    ijk_to_ras = make_ijk_to_ras(np.eye(3), (2.0, 2.0, 2.0), shape, (0.0, 0.0, 0.0))
    parameters = widget._parameterNode
    parameters.inputVolume = slicer.util.addVolumeFromArray(spheres_volume(shape, ijk_to_ras, (0, 0, 0), 20.0),
                                                            ijk_to_ras, name)
    parameters.model, parameters.device = model, "cpu"
    return parameters


def placed_unticked_and_ticked(widget, parameters, setting: str) -> dict[bool, dict[str, bool]]:
    """Detect with the Advanced ``setting`` unticked, then ticked: whether each landmark was placed, by label."""
    placed = {}
    for use in (False, True):
        setattr(parameters, setting, use)
        widget.ui.detectButton.click()
        points = slicer.mrmlScene.GetFirstNodeByName(parameters.inputVolume.GetName() + " landmarks"
                                                     + ("_1" if use else ""))
        placed[use] = {points.GetNthControlPointLabel(i): points.GetNthControlPointPositionStatus(i) ==
                       points.PositionDefined for i in range(points.GetNumberOfControlPoints())}
    return placed


def test_the_confidence_threshold_override_decides_what_is_found(module, widget, monkeypatch, tmp_path):
    """A model calibrated at 0.818 (not 0.5): unticked, the panel uses it; ticked, the value set in Advanced."""
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path))
    save_confidence_model(tmp_path / "confident.pt")
    parameters = ball_in_panel(widget, "Ball", "confident")
    parameters.confidenceThreshold = 0.6
    statuses = placed_unticked_and_ticked(widget, parameters, "useConfidenceThreshold")
    assert statuses[False] == {"Above": True, "AtThreshold": True, "JustBelow": False, "Between": False,
                               "Below": False}
    assert statuses[True] == {"Above": True, "AtThreshold": True, "JustBelow": True, "Between": True, "Below": False}


def test_the_mirror_tolerance_override_decides_what_is_found(module, widget, monkeypatch, tmp_path):
    """A pair that disagrees with its mirror by 30 mm: lost at the model's 5 mm, found when Advanced allows 50 mm;
    a model without left-right pairs greys the setting out and unticks it."""
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path))
    save_side_guess_model(tmp_path / "sideguess.pt", tolerance_mm=5.0)
    parameters = ball_in_panel(widget, "Pair", "sideguess")
    assert parameters.mirrorToleranceMm == 5.0 and widget.ui.useMirrorToleranceCheckBox.enabled
    parameters.mirrorToleranceMm = 50.0
    found = placed_unticked_and_ticked(widget, parameters, "useMirrorTolerance")
    assert found == {False: {"PointR": False, "PointL": False}, True: {"PointR": True, "PointL": True}}
    parameters.model = "hand-mr"
    assert not parameters.useMirrorTolerance and not widget.ui.useMirrorToleranceCheckBox.enabled
