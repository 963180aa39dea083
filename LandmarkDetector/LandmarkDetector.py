"""3D Slicer module "Landmark Detector": the panel, the logic and the self-test.

All computation is in LandmarkDetectorLib; this file converts between MRML nodes and arrays, and wires the panel.
"""

import importlib.util
import logging
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, Union

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LandmarkDetectorLib import (
    Cancelled,
    InputError,
    LandmarkModel,
    Landmarks,
    ModelError,
    available_models,
    detect_landmarks,
    load_model,
)
from LandmarkDetectorLib.images import depth_to_uint8
from LandmarkDetectorLib.markups import MarkupsPoint, PointList, write_markups
from LandmarkDetectorLib.model import (
    BUNDLED_DIR,
    DEFAULT_MODEL,
    ModelMetadata,
    available_devices,
    default_model,
    measured_accuracy,
    model_file,
    model_name_of,
    read_metadata,
    user_model_path,
)
from LandmarkDetectorLib.phantom import hand_phantom
from LandmarkDetectorLib.pipeline import projection_settings
from LandmarkDetectorLib.results import result_rows
from LandmarkDetectorLib.volume_io import write_volume

DOCUMENTATION_URL = "https://github.com/LandmarkDetector/SlicerLandmarkDetector#readme"
MODEL_CARD_URL = "https://github.com/LandmarkDetector/SlicerLandmarkDetector/blob/main/Resources/ModelCards/{name}.md"
LOAD_MODEL_FILE = ""  # model list entry that opens a file dialog (no model has an empty name)
ROW_COLORS = {"not_found": "#f4c7c3", "low": "#fce8b2"}  # results table background of landmarks to check
POINT_EVENTS = (vtkMRMLMarkupsFiducialNode.PointModifiedEvent, vtkMRMLMarkupsFiducialNode.PointPositionDefinedEvent,
                vtkMRMLMarkupsFiducialNode.PointPositionUndefinedEvent)  # a point moved, placed or unplaced


class LandmarkDetector(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Landmark Detector")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["LandmarkDetector developers"]
        self.parent.helpText = _(
            "Detects anatomical landmarks in CT and MR volumes: top of head, shoulders, middle fingertips, knees and "
            "big toes in whole-body CT, or the five fingertips in a hand MR. The volume is projected to a silhouette "
            "and a depth image that a neural network reads."
            "<ol><li>Select the input volume and a model.</li>"
            "<li>Click <b>Detect landmarks</b>. A new point list appears, one point per landmark.</li>"
            "<li>Check the table: click a row to jump to its point. Landmarks that were not found are unplaced "
            "points: click their row, then click in a view to place them.</li></ol>"
            "To adapt a model to your scans, correct the points of a few volumes and use <b>Fine-tune</b>. "
            '<a href="{documentation}">Documentation and model cards</a>.').format(documentation=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _(
            "The method follows G. Riegler, M. Urschler, M. Ruether, H. Bischof, D. Stern: "
            "Anatomical landmark detection in medical applications driven by synthetic data, "
            "ICCV Workshops 2015.")


@parameterNodeWrapper
class LandmarkDetectorParameterNode:
    """The panel's settings, saved with the scene. Unticked use* settings show the model's own values.

    model: model name (bundled or user model) or model file path.
    outputPoints: point list to replace; None creates a new list.
    finetuneFolds: cross-validation folds; 0 is leave-one-out.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str
    device: str = "auto"
    useThreshold: bool = False
    threshold: float
    useTableRemoval: bool = False
    tableRemovalMm: Annotated[float, WithinRange(0.0, 500.0)]
    useConfidenceThreshold: bool = False
    confidenceThreshold: Annotated[float, WithinRange(0.0, 1.0)]
    showProjection: bool = False
    outputPoints: vtkMRMLMarkupsFiducialNode
    finetuneModelName: str = "my-model"
    finetuneSteps: Annotated[int, WithinRange(1, 100000)] = 300
    finetuneFolds: Annotated[int, WithinRange(0, 100)] = 5


class LandmarkDetectorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The "Detect landmarks" panel."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._modelItems: list[str] = []  # model list entries: model names, file paths, LOAD_MODEL_FILE
        self._modelFiles: list[str] = []  # model files the user loaded
        self._deviceItems: list[str] = []
        self._shownModel: Optional[str] = None
        self._modelProblem = ""
        self._landmarks: Optional[Landmarks] = None
        self._resultPoints: Optional[vtkMRMLMarkupsFiducialNode] = None
        self._finetuneCases: list[tuple[str, str]] = []  # (volume node ID, point list node ID)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LandmarkDetector.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LandmarkDetectorLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelComboBox.connect("activated(int)", self.onModelActivated)
        self.ui.deviceComboBox.connect("activated(int)", self.onDeviceActivated)
        self.ui.detectButton.connect("clicked(bool)", self.onDetectButton)
        self.ui.resultsTable.connect("cellClicked(int,int)", self.onResultClicked)
        self.ui.addCaseButton.connect("clicked(bool)", self.onAddFinetuneCase)
        self.ui.removeCaseButton.connect("clicked(bool)", self.onRemoveFinetuneCase)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetuneButton)

        self._populateDevices()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onReload(self) -> None:
        """Reload LandmarkDetectorLib too: Slicer re-imports only this file.

        The core's modules are forgotten so that this file's imports load them afresh; ``importlib.reload`` in any
        fixed order could leave a module bound to a stale dependency (pipeline to the old model module, say).
        """
        for name in [n for n in sys.modules if n == "LandmarkDetectorLib" or n.startswith("LandmarkDetectorLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._showResults(None, None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Select the first volume and the default model if none is selected yet."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume
        if not self._parameterNode.model:
            self._parameterNode.model = default_model()

    def setParameterNode(self, inputParameterNode: Optional[LandmarkDetectorParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Show the selected model and device; enable the buttons when their inputs are usable."""
        parameterNode = self._parameterNode
        if parameterNode is None:
            return
        if parameterNode.model != self._shownModel:
            self._showModel(parameterNode.model)
        self._selectItem(self.ui.deviceComboBox, self._deviceItems, parameterNode.device)
        problem = self.logic.inputProblem(parameterNode.inputVolume) or self._modelProblem
        self.ui.detectButton.enabled = not problem
        self.ui.detectButton.toolTip = problem or _("Detect the model's landmarks in the input volume.")
        finetuneProblem = self.logic.finetuneProblem() or self._modelProblem or (
            "" if len(self._finetuneCases) >= 2 else _("Add at least two volumes with their corrected point lists."))
        self.ui.finetuneButton.enabled = not finetuneProblem
        self.ui.finetuneButton.toolTip = finetuneProblem or _("Fine-tune the selected model on these cases.")

    @staticmethod
    def _selectItem(comboBox, items: list[str], value: str) -> None:
        if value in items:
            comboBox.setCurrentIndex(items.index(value))

    def _populateDevices(self) -> None:
        """Device list: automatic, then what PyTorch finds (CPU and GPU choices when PyTorch is not installed)."""
        found = available_devices()
        labels = {"auto": _("Automatic (GPU if found)"), "cpu": _("CPU"), "cuda": _("GPU")}
        labels.update({device: _("GPU: {name}").format(name=name) for device, name in found.items() if device != "cpu"})
        self._deviceItems = ["auto", *(found or ["cpu", "cuda"])]
        self.ui.deviceComboBox.clear()
        for device in self._deviceItems:
            self.ui.deviceComboBox.addItem(labels[device])
        self.ui.deviceComboBox.toolTip = (_("PyTorch finds: {devices}.").format(devices=", ".join(found.values()))
                                          if found else _("PyTorch is not installed yet."))

    def _populateModels(self) -> None:
        """Model list: bundled and user models, model files loaded in this session, and "Load model file..."."""
        models = list(available_models())
        self._modelItems = models + [path for path in self._modelFiles if path not in models] + [LOAD_MODEL_FILE]
        self.ui.modelComboBox.clear()
        for item in self._modelItems:
            text = _("Load model file...") if item == LOAD_MODEL_FILE else item if item in models else (
                _("{file} (file)").format(file=Path(item).name))
            self.ui.modelComboBox.addItem(text)

    def _showModel(self, model: str) -> None:
        """List the model, describe it, and show its settings in the unticked Advanced fields."""
        self._shownModel = model
        if model not in available_models() and model not in self._modelFiles and Path(model).is_file():
            self._modelFiles.append(model)  # a model file named in a loaded scene
        self._populateModels()
        self._selectItem(self.ui.modelComboBox, self._modelItems, model)
        try:
            metadata = read_metadata(model_file(model))
        except ModelError as error:
            self._modelProblem = str(error)
            self.ui.modelInfoLabel.text = self._modelProblem
            return
        self._modelProblem = ""
        self.ui.modelInfoLabel.text = self._modelDescription(model, metadata)
        parameterNode = self._parameterNode
        with slicer.util.NodeModify(parameterNode):
            if not parameterNode.useThreshold and metadata.projection.threshold is not None:
                parameterNode.threshold = metadata.projection.threshold
            if not parameterNode.useTableRemoval:
                parameterNode.tableRemovalMm = metadata.projection.table_removal_mm
            if not parameterNode.useConfidenceThreshold:
                parameterNode.confidenceThreshold = metadata.confidence_threshold

    @staticmethod
    def _modelDescription(model: str, metadata: ModelMetadata) -> str:
        """HTML: description, landmarks, measured accuracy, model card link."""
        lines = [metadata.description, _("<b>Landmarks:</b> {names}").format(names=", ".join(metadata.landmarks))]
        accuracy = measured_accuracy(metadata)
        if accuracy and accuracy.get("mean_mm") is not None and accuracy.get("median_mm") is not None:
            lines.append(_("<b>Measured error:</b> mean {mean:.1f} mm, median {median:.1f} mm.").format(
                mean=accuracy["mean_mm"], median=accuracy["median_mm"]))
        if (BUNDLED_DIR / f"{model}.pt").is_file():
            lines.append('<a href="{url}">{text}</a>'.format(url=MODEL_CARD_URL.format(name=model),
                                                            text=_("Model card")))
        return "<br>".join(lines)

    def onModelActivated(self, index: int) -> None:
        """A model chosen in the list; "Load model file..." asks for a file."""
        model = self._modelItems[index]
        if model == LOAD_MODEL_FILE:
            model = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("Load a LandmarkDetector model"),
                                                   "", _("Model files (*.pt)"))
            if not model:
                self._selectItem(self.ui.modelComboBox, self._modelItems, self._parameterNode.model)
                return
            if model not in self._modelFiles:
                self._modelFiles.append(model)
        self._parameterNode.model = model

    def onDeviceActivated(self, index: int) -> None:
        self._parameterNode.device = self._deviceItems[index]

    def _torchReady(self) -> bool:
        """Whether PyTorch can be used; offers PyTorch's one-click install (PyTorch extension) when it is missing."""
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            if importlib.util.find_spec("torch") is not None:
                return True
            slicer.util.errorDisplay(_("Landmark Detector needs PyTorch. Install the 'PyTorch' extension from the "
                                       "Extensions Manager, restart Slicer, and click the button again."))
            return False
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.torchInstalled():
            return True
        with slicer.util.tryWithErrorDisplay(_("PyTorch could not be installed."), waitCursor=True):
            if torchLogic.installTorch(askConfirmation=True) is None:
                slicer.util.errorDisplay(_("Landmark Detector needs PyTorch, which was not installed."))
                return False
        self._populateDevices()
        return True

    def _overrides(self) -> dict[str, Any]:
        """The Advanced settings the user ticked, as detect() arguments."""
        parameterNode = self._parameterNode
        return {
            "threshold": parameterNode.threshold if parameterNode.useThreshold else None,
            "tableRemovalMm": parameterNode.tableRemovalMm if parameterNode.useTableRemoval else None,
            "confidenceThreshold": (parameterNode.confidenceThreshold if parameterNode.useConfidenceThreshold
                                    else None),
        }

    def onDetectButton(self) -> None:
        """Detect with a progress dialog; the scene changes only when detection succeeded."""
        parameterNode = self._parameterNode
        outputPoints = parameterNode.outputPoints
        if outputPoints and outputPoints.GetNumberOfControlPoints() and not slicer.util.confirmOkCancelDisplay(
                _("Replace the {count} points of '{name}' with the detected landmarks?").format(
                    count=outputPoints.GetNumberOfControlPoints(), name=outputPoints.GetName())):
            return
        if not self._torchReady():
            return
        with slicer.util.tryWithErrorDisplay(_("Landmark detection failed."), waitCursor=True):
            try:
                landmarks = self._withProgress(_("Detecting landmarks"), lambda progress, shouldCancel: (
                    self.logic.detectLandmarks(parameterNode.inputVolume, parameterNode.model, parameterNode.device,
                                               **self._overrides(), progress=progress,
                                               shouldCancel=shouldCancel)))
            except Cancelled:
                slicer.util.showStatusMessage(_("Cancelled; no landmarks added."), 5000)
                return
            points = self.logic.updatePointList(landmarks, outputPoints,
                                                self.logic.pointListName(parameterNode.inputVolume))
            if parameterNode.showProjection:
                self.logic.addProjectionVolume(landmarks, _("{volume} projection").format(
                    volume=parameterNode.inputVolume.GetName()))
            self._showResults(landmarks, points)

    @staticmethod
    def _withProgress(title: str, work: Callable[[Callable[[float, str], None], Callable[[], bool]], Any]) -> Any:
        """Run work(progress, shouldCancel) with a progress dialog whose Cancel button stops it."""
        dialog = slicer.util.createProgressDialog(windowTitle=title, labelText=title, maximum=100)

        def progress(fraction: float, message: str) -> None:
            dialog.value = round(100 * fraction)
            dialog.labelText = message
            slicer.app.processEvents()

        def shouldCancel() -> bool:
            slicer.app.processEvents()  # long steps check this often: it keeps the dialog responsive
            return dialog.wasCanceled

        try:
            return work(progress, shouldCancel)
        finally:
            dialog.close()

    def _showResults(self, landmarks: Optional[Landmarks], points: Optional[vtkMRMLMarkupsFiducialNode]) -> None:
        """Show a detection in the table, and keep the table in step with its point list."""
        for event in POINT_EVENTS if self._resultPoints is not None else ():
            self.removeObserver(self._resultPoints, event, self._fillResultsTable)
        self._landmarks, self._resultPoints = landmarks, points
        for event in POINT_EVENTS if points is not None else ():
            self.addObserver(points, event, self._fillResultsTable)
        self._fillResultsTable()

    def _fillResultsTable(self, caller=None, event=None) -> None:
        points = self._resultPoints
        rows = [] if points is None else result_rows(self._landmarks, self.logic.pointListFromNode(points))
        table = self.ui.resultsTable
        table.setRowCount(len(rows))
        tips = {"not_found": _("Not found. Click the row, then click in a view to place this landmark."),
                "low": _("Low confidence: check this landmark."), "placed": _("Placed by hand.")}
        for row, result in enumerate(rows):
            for column, text in enumerate(result.cells()):
                item = qt.QTableWidgetItem(text)
                if result.level in ROW_COLORS:
                    item.setBackground(qt.QBrush(qt.QColor(ROW_COLORS[result.level])))
                item.setToolTip(tips.get(result.level, ""))
                table.setItem(row, column, item)
        if points is None:
            self.ui.resultsLabel.text = ""
            return
        found = sum(result.level != "not_found" for result in rows)
        self.ui.resultsLabel.text = _("{found} of {total} landmarks placed in point list '{name}'.").format(
            found=found, total=len(rows), name=points.GetName())

    def onResultClicked(self, row: int, column: int) -> None:
        """Jump the views to a placed landmark, or start placing a landmark that was not found."""
        points = self._resultPoints
        if points is None or points.GetScene() is None or row >= points.GetNumberOfControlPoints():
            return
        markupsLogic = slicer.modules.markups.logic()
        if points.GetNthControlPointPositionStatus(row) == points.PositionDefined:
            markupsLogic.JumpSlicesToNthPointInMarkup(points.GetID(), row, True)
        else:
            points.SetControlPointPlacementStartIndex(row)
            markupsLogic.SetActiveList(points)
            markupsLogic.StartPlaceMode(False)

    def onAddFinetuneCase(self) -> None:
        volume = self.ui.caseVolumeSelector.currentNode()
        points = self.ui.casePointsSelector.currentNode()
        if volume is None or points is None or (volume.GetID(), points.GetID()) in self._finetuneCases:
            return
        self._finetuneCases.append((volume.GetID(), points.GetID()))
        self._fillFinetuneCases()

    def onRemoveFinetuneCase(self) -> None:
        rows = sorted({index.row() for index in self.ui.finetuneCasesTable.selectedIndexes()}, reverse=True)
        for row in rows:
            del self._finetuneCases[row]
        self._fillFinetuneCases()

    def _fillFinetuneCases(self) -> None:
        table = self.ui.finetuneCasesTable
        table.setRowCount(len(self._finetuneCases))
        for row, nodeIDs in enumerate(self._finetuneCases):
            for column, nodeID in enumerate(nodeIDs):
                node = slicer.mrmlScene.GetNodeByID(nodeID)
                table.setItem(row, column, qt.QTableWidgetItem(node.GetName() if node else _("(deleted)")))
        self._checkCanApply()

    def onFinetuneButton(self) -> None:
        """Fine-tune the selected model on the listed cases, save it as a user model and select it."""
        parameterNode = self._parameterNode
        name = parameterNode.finetuneModelName
        with slicer.util.tryWithErrorDisplay(_("Fine-tuning failed."), waitCursor=True):
            overwrite = user_model_path(name).exists()
            if overwrite and not slicer.util.confirmOkCancelDisplay(
                    _("A model named '{name}' exists. Replace it?").format(name=name)):
                return
            if not self._torchReady():
                return
            cases = [(slicer.mrmlScene.GetNodeByID(v), slicer.mrmlScene.GetNodeByID(p)) for v, p in self._finetuneCases]
            try:
                path, report = self._withProgress(_("Fine-tuning"), lambda progress, shouldCancel: (
                    self.logic.finetune(cases, parameterNode.model, name, parameterNode.finetuneSteps,
                                        parameterNode.finetuneFolds, overwrite=overwrite, progress=progress,
                                        shouldCancel=shouldCancel)))
            except Cancelled:
                slicer.util.showStatusMessage(_("Fine-tuning cancelled; no model saved."), 5000)
                return
            self.ui.finetuneReportBrowser.markdown = report + "\n" + _("Saved as {path}.").format(path=path)
            parameterNode.model = model_name_of(path)
            self._shownModel = None  # lists the new model, also when it replaced the selected one
            self._checkCanApply()


class LandmarkDetectorLogic(ScriptedLoadableModuleLogic):
    """Landmark detection on MRML nodes, for the panel, Slicer's Python console and batch scripts::

        from LandmarkDetector import LandmarkDetectorLogic
        points = LandmarkDetectorLogic().detect(slicer.util.getNode("MRHead"), model="hand-mr")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._models: dict[tuple[str, str], tuple[float, LandmarkModel]] = {}

    def getParameterNode(self) -> LandmarkDetectorParameterNode:
        return LandmarkDetectorParameterNode(super().getParameterNode())

    def loadModel(self, model: Union[str, LandmarkModel], device: str = "auto") -> LandmarkModel:
        """The model on ``device``; a model given by name or file is loaded once and kept until its file changes."""
        if isinstance(model, LandmarkModel):
            return model.to(device)
        path = model_file(model)
        modified = path.stat().st_mtime if path.is_file() else 0.0
        cached = self._models.get((str(path), device))
        if cached is None or cached[0] != modified:
            cached = self._models[(str(path), device)] = (modified, load_model(model, device))
        return cached[1]

    @staticmethod
    def inputProblem(inputVolume: Optional[vtkMRMLScalarVolumeNode]) -> str:
        """Why landmarks cannot be detected in ``inputVolume``; "" when they can."""
        if inputVolume is None:
            return _("Select an input volume.")
        name = inputVolume.GetName()
        if inputVolume.IsA("vtkMRMLLabelMapVolumeNode"):
            return _("'{name}' is a label map; select an image volume (CT or MR).").format(name=name)
        image = inputVolume.GetImageData()
        if image is None or 0 in image.GetDimensions():
            return _("'{name}' has no voxels.").format(name=name)
        components = image.GetNumberOfScalarComponents()
        if inputVolume.IsA("vtkMRMLTensorVolumeNode") or components != 1:
            return _("'{name}' is a vector, color or tensor volume ({count} values per voxel); select a scalar "
                     "CT or MR volume, or convert it with the 'Vector to Scalar Volume' module.").format(
                name=name, count=components)
        dimensions = image.GetDimensions()
        if 1 in dimensions:
            return _("'{name}' is a 2D image ({i} x {j} x {k} voxels); landmark detection needs a 3D volume.").format(
                name=name, i=dimensions[0], j=dimensions[1], k=dimensions[2])
        transform = inputVolume.GetParentTransformNode()
        if transform is not None and not transform.IsTransformToWorldLinear():
            while transform.IsLinear() and transform.GetParentTransformNode():  # name the non-linear one
                transform = transform.GetParentTransformNode()
            return _("'{name}' is under the non-linear transform '{transform}'; harden the transform (Data module, "
                     "right-click the volume) or remove it.").format(name=name, transform=transform.GetName())
        return ""

    def volumeArrays(self, inputVolume: Optional[vtkMRMLScalarVolumeNode]) -> tuple[np.ndarray, np.ndarray]:
        """(voxels [k, j, i], 4x4 IJK-to-world RAS matrix including the linear parent transforms).

        Raises:
            InputError: see inputProblem().
        """
        problem = self.inputProblem(inputVolume)
        if problem:
            raise InputError(problem)
        ijkToRAS = vtk.vtkMatrix4x4()
        inputVolume.GetIJKToRASMatrix(ijkToRAS)
        ijkToWorld = slicer.util.arrayFromVTKMatrix(ijkToRAS)
        transform = inputVolume.GetParentTransformNode()
        if transform is not None:
            toWorld = vtk.vtkMatrix4x4()
            transform.GetMatrixTransformToWorld(toWorld)
            ijkToWorld = slicer.util.arrayFromVTKMatrix(toWorld) @ ijkToWorld
        return slicer.util.arrayFromVolume(inputVolume), ijkToWorld

    def detectLandmarks(self, inputVolume: Optional[vtkMRMLScalarVolumeNode],
                        model: Union[str, LandmarkModel] = DEFAULT_MODEL,
                        device: str = "auto", confidenceThreshold: Optional[float] = None,
                        threshold: Optional[float] = None, tableRemovalMm: Optional[float] = None,
                        progress: Optional[Callable[[float, str], None]] = None,
                        shouldCancel: Optional[Callable[[], bool]] = None) -> Landmarks:
        """Detect landmarks without changing the scene (see detect())."""
        volumeKJI, ijkToWorld = self.volumeArrays(inputVolume)
        if progress:
            progress(0.0, _("Loading the model"))
        loaded = self.loadModel(model, device)
        return detect_landmarks(volumeKJI, ijkToWorld, loaded, device, confidence_threshold=confidenceThreshold,
                                projection=projection_settings(loaded, threshold, tableRemovalMm), progress=progress,
                                should_cancel=shouldCancel)

    def detect(self, inputVolume: Optional[vtkMRMLScalarVolumeNode],
               outputPoints: Optional[vtkMRMLMarkupsFiducialNode] = None,
               model: Union[str, LandmarkModel] = DEFAULT_MODEL,
               device: str = "auto", confidenceThreshold: Optional[float] = None, threshold: Optional[float] = None,
               tableRemovalMm: Optional[float] = None, progress: Optional[Callable[[float, str], None]] = None,
               shouldCancel: Optional[Callable[[], bool]] = None) -> vtkMRMLMarkupsFiducialNode:
        """Detect a model's landmarks in a volume and put them in a point list.

        Args:
            inputVolume: scalar 3D volume, possibly under linear transforms.
            outputPoints: point list whose points are replaced; None adds a new list "<volume> landmarks".
            model: model name (bundled or user model), model file path, or a loaded model.
            device: "auto", "cpu" or "cuda".
            confidenceThreshold, threshold, tableRemovalMm: replace the model's settings (None keeps them).
            progress: called with (fraction, message).
            shouldCancel: returns True to stop.
        Returns:
            The point list: one control point per landmark, labelled with its name, "confidence 0.973" as
            description, in world RAS; landmarks not found are unplaced points (position undefined).
        Raises:
            InputError: unusable volume (no volume, 2D, label map, vector, non-linear transform).
            ModelError: the model cannot be loaded.
            Cancelled: shouldCancel() returned True. On any error the scene is left unchanged.
        """
        landmarks = self.detectLandmarks(inputVolume, model, device, confidenceThreshold, threshold, tableRemovalMm,
                                         progress, shouldCancel)
        return self.updatePointList(landmarks, outputPoints, self.pointListName(inputVolume))

    @staticmethod
    def pointListName(inputVolume: vtkMRMLScalarVolumeNode) -> str:
        return _("{volume} landmarks").format(volume=inputVolume.GetName())

    @staticmethod
    def updatePointList(landmarks: Landmarks, pointList: Optional[vtkMRMLMarkupsFiducialNode] = None,
                        name: str = "Landmarks") -> vtkMRMLMarkupsFiducialNode:
        """Put detected landmarks in ``pointList`` (replacing its points) or in a new list called ``name``."""
        if pointList is None:
            pointList = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode",
                                                           slicer.mrmlScene.GenerateUniqueName(name))
            pointList.CreateDefaultDisplayNodes()
        points = landmarks.to_point_list().points
        with slicer.util.NodeModify(pointList):
            pointList.RemoveAllControlPoints()
            slicer.util.updateMarkupsControlPointsFromArray(pointList, landmarks.points_ras, world=True)
            for index, point in enumerate(points):
                pointList.SetNthControlPointLabel(index, point.label)
                pointList.SetNthControlPointDescription(index, point.description)
                if point.status == "undefined":
                    pointList.UnsetNthControlPointPosition(index)
        return pointList

    @staticmethod
    def addProjectionVolume(landmarks: Landmarks, name: str) -> vtkMRMLScalarVolumeNode:
        """Add the depth image the network saw (nearer = brighter) as a one-slice volume in the coronal plane
        through the body's mean surface depth."""
        image = landmarks.canvas.image
        ijkToRAS = image.pixel_to_ras.copy()
        ijkToRAS[:3, 3] = image.uvd_to_ras([[0.0, 0.0, image.depth_mean_mm]])[0]
        return slicer.util.addVolumeFromArray(depth_to_uint8(image)[np.newaxis], ijkToRAS, name)

    @staticmethod
    def pointListFromNode(pointList: vtkMRMLMarkupsFiducialNode) -> PointList:
        """A point list node's points in world RAS; points being placed count as unplaced."""
        points = []
        for index in range(pointList.GetNumberOfControlPoints()):
            position = [0.0, 0.0, 0.0]
            pointList.GetNthControlPointPositionWorld(index, position)
            defined = pointList.GetNthControlPointPositionStatus(index) == pointList.PositionDefined
            points.append(MarkupsPoint(pointList.GetNthControlPointLabel(index), tuple(position),
                                       pointList.GetNthControlPointDescription(index),
                                       "defined" if defined else "undefined"))
        return PointList(tuple(points), pointList.GetName())

    @staticmethod
    def finetuneProblem() -> str:
        """Why fine-tuning cannot run here; "" when it can."""
        if importlib.util.find_spec("scipy") is None:  # Slicer bundles SciPy; a custom build may lack it
            return _("Fine-tuning needs SciPy, which this Slicer's Python lacks: install it from the Python console "
                     "with slicer.util.pip_install('scipy'), or run 'landmark-detector finetune' from a Python with "
                     "the landmark-detector[train] package.")
        return ""

    def finetune(self, cases: list[tuple[vtkMRMLScalarVolumeNode, vtkMRMLMarkupsFiducialNode]], model: str,
                 modelName: str, steps: int = 300, folds: int = 5, overwrite: bool = False,
                 progress: Optional[Callable[[float, str], None]] = None,
                 shouldCancel: Optional[Callable[[], bool]] = None) -> tuple[Path, str]:
        """Fine-tune ``model`` on volumes with corrected point lists (labels = the model's landmark names), with
        cross-validation, and save it as user model ``modelName``.

        Returns:
            The new model file and the cross-validation report (Markdown).
        Raises:
            InputError: fewer than 2 cases, an unusable volume, an empty point list, a bad name, no SciPy.
            Cancelled: shouldCancel() returned True; nothing was saved.
        """
        problem = self.finetuneProblem()
        if problem:
            raise InputError(problem)
        import torch

        from LandmarkDetectorLib.training.finetune import FinetuneConfig, finetune, report_markdown

        outPath = user_model_path(modelName)
        if len(cases) < 2:
            raise InputError(_("Fine-tuning needs at least 2 volumes with point lists, got {count}.").format(
                count=len(cases)))
        if folds == 1:
            raise InputError(_("Cross-validation needs 2 folds or more, or 0 for leave-one-out; got 1."))
        with tempfile.TemporaryDirectory(prefix="LandmarkDetector-") as folder:
            for index, (volume, points) in enumerate(cases):
                if volume is None or points is None or not points.GetNumberOfControlPoints():
                    raise InputError(_("Case {index} has no volume, no point list or an empty one.").format(
                        index=index + 1))
                stem = f"{index + 1:03d}-{re.sub(r'[^A-Za-z0-9_-]+', '_', volume.GetName())}"
                write_volume(Path(folder) / f"{stem}.nrrd", *self.volumeArrays(volume))
                write_markups(Path(folder) / f"{stem}.mrk.json", self.pointListFromNode(points))
            outPath.parent.mkdir(parents=True, exist_ok=True)
            # The decay step follows the paper's 500 of 700 iterations; threads stay as Slicer has them.
            config = FinetuneConfig(steps=steps, decay_after=max(1, steps * 5 // 7), folds=folds,
                                    threads=torch.get_num_threads())
            result = finetune(model, folder, outPath, config, overwrite=overwrite, progress=progress,
                              should_cancel=shouldCancel)
        logging.info("Fine-tuned model saved as %s", outPath)
        return outPath, report_markdown(result)


class LandmarkDetectorTest(ScriptedLoadableModuleTest):
    """Self-test in a running Slicer: the whole click path on a synthetic hand, with the bundled hand-mr model."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_DetectButton()
        self.setUp()
        self.test_BadInputsAndCancel()

    @staticmethod
    def _enterModule() -> LandmarkDetectorWidget:
        """The module's panel, entered: it then follows the scene's parameter node."""
        slicer.util.selectModule("LandmarkDetector")
        return slicer.util.getModuleWidget("LandmarkDetector")

    def _addHand(self) -> tuple[vtkMRMLScalarVolumeNode, dict[str, np.ndarray]]:
        """The hand phantom under a linear transform (rotation and translation); tips in world RAS."""
        voxels, ijkToRAS, tips = hand_phantom()
        volume = slicer.util.addVolumeFromArray(voxels, ijkToRAS, "Hand phantom")
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Hand pose")
        matrix = vtk.vtkTransform()
        matrix.Translate(20.0, -15.0, 30.0)
        matrix.RotateZ(8.0)
        transform.SetMatrixTransformToParent(matrix.GetMatrix())
        volume.SetAndObserveTransformNodeID(transform.GetID())
        toWorld = slicer.util.arrayFromVTKMatrix(matrix.GetMatrix())
        return volume, {name: (toWorld @ [*tip, 1.0])[:3] for name, tip in tips.items()}

    def test_DetectButton(self) -> None:
        """Select the volume and the hand model, click Detect twice, click the rows of the table."""
        self.delayDisplay("Detect landmarks in a hand phantom")
        volume, tips = self._addHand()
        widget = self._enterModule()
        parameterNode = widget.logic.getParameterNode()
        parameterNode.inputVolume = volume
        parameterNode.model = "hand-mr"
        parameterNode.outputPoints = None
        self.assertTrue(widget.ui.detectButton.enabled, widget.ui.detectButton.toolTip)

        widget.ui.detectButton.click()
        first = slicer.mrmlScene.GetFirstNodeByName("Hand phantom landmarks")
        self.assertIsNotNone(first)
        self.assertEqual([first.GetNthControlPointLabel(i) for i in range(first.GetNumberOfControlPoints())],
                         list(tips))
        self.assertEqual(widget.ui.resultsTable.rowCount, len(tips))
        for index, (name, tip) in enumerate(tips.items()):  # the phantom's fingertips are found within ~5 mm
            self.assertTrue(first.GetNthControlPointDescription(index).startswith("confidence "))
            self.assertEqual(first.GetNthControlPointPositionStatus(index), first.PositionDefined, name)
            position = [0.0, 0.0, 0.0]
            first.GetNthControlPointPositionWorld(index, position)
            self.assertLess(np.linalg.norm(np.array(position) - tip), 10.0, name)
            widget.onResultClicked(index, 0)
        positions = slicer.util.arrayFromMarkupsControlPoints(first).copy()

        self.delayDisplay("A second run makes a new list")
        widget.ui.detectButton.click()
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLMarkupsFiducialNode")), 2)
        np.testing.assert_array_equal(slicer.util.arrayFromMarkupsControlPoints(first), positions)
        self.delayDisplay("Test passed")

    def test_BadInputsAndCancel(self) -> None:
        """The button is disabled for unusable volumes; the logic refuses them and cancels without a trace."""
        self.delayDisplay("Unusable inputs and Cancel")
        volume, _tips = self._addHand()
        widget = self._enterModule()
        parameterNode = widget.logic.getParameterNode()
        slice2D = slicer.util.addVolumeFromArray(np.ones((1, 40, 50), np.int16), name="One slice")
        labels = slicer.util.addVolumeFromArray(np.ones((5, 40, 50), np.uint8), name="Labels",
                                                nodeClassName="vtkMRMLLabelMapVolumeNode")
        for bad in (None, slice2D, labels):
            parameterNode.inputVolume = bad
            self.assertFalse(widget.ui.detectButton.enabled)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        logic = LandmarkDetectorLogic()
        for bad in (None, slice2D, labels):
            with self.assertRaises(InputError):
                logic.detect(bad, model="hand-mr")
        with self.assertRaises(Cancelled):
            logic.detect(volume, model="hand-mr", shouldCancel=lambda: True)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.delayDisplay("Test passed")
