"""The module's panel: wires LandmarkDetector.ui to the parameter node and the logic."""

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from LandmarkDetectorLib import Cancelled, Landmarks, ModelError, available_models
from LandmarkDetectorLib.model import (
    BUNDLED_DIR,
    ModelMetadata,
    available_devices,
    default_model,
    measured_error_text,
    model_file,
    model_name_of,
    read_metadata,
    user_model_path,
)
from LandmarkDetectorLib.results import result_rows

from .logic import LandmarkDetectorLogic
from .parameters import LandmarkDetectorParameterNode

MODEL_CARDS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "ModelCards"  # shipped with the module
LOAD_MODEL_FILE = ""  # model list entry that opens a file dialog (no model has an empty name)
ROW_COLORS = {"not_found": "#f4c7c3", "low": "#fce8b2"}  # results table background of landmarks to check
POINT_EVENTS = (vtkMRMLMarkupsFiducialNode.PointModifiedEvent, vtkMRMLMarkupsFiducialNode.PointPositionDefinedEvent,
                vtkMRMLMarkupsFiducialNode.PointPositionUndefinedEvent)  # a point moved, placed or unplaced


class LandmarkDetectorPanel(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The "Detect landmarks" panel. Slicer creates it as its subclass LandmarkDetector.LandmarkDetectorWidget, whose
    class name gives the module name (resourcePath, Reload and Test)."""

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
        self._resultRows: list = []  # the results table's rows (ResultRow), each naming its control point
        self._devicesFound = False  # the device list names the GPU PyTorch found (asked at the first run)
        self._running = ""  # title of the detection or fine-tuning under way; "" when idle
        self._cancelRequested = False  # set when the scene closes under a run
        self._warning = ""  # one line when the detection as a whole looks wrong (see pipeline.detection_warning)

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

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRequested = bool(self._running)  # a run under way stops at its next check, writing nothing
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

    def _populateDevices(self, found: Optional[dict[str, str]] = None) -> None:
        """Device list: automatic, then what PyTorch found (``found``; CPU and GPU choices before PyTorch is asked:
        importing it and initialising CUDA takes seconds, so the panel opens without it)."""
        found = found or {}
        labels = {"auto": _("Automatic (GPU if found)"), "cpu": _("CPU"), "cuda": _("GPU")}
        labels.update({device: _("GPU: {name}").format(name=name) for device, name in found.items() if device != "cpu"})
        self._deviceItems = ["auto", *(found or ["cpu", "cuda"])]
        self.ui.deviceComboBox.clear()
        for device in self._deviceItems:
            self.ui.deviceComboBox.addItem(labels[device])
        self.ui.deviceComboBox.toolTip = (_("PyTorch finds: {devices}.").format(devices=", ".join(found.values()))
                                          if found else _("The devices PyTorch finds are listed after the first run."))
        self._selectItem(self.ui.deviceComboBox, self._deviceItems, self._parameterNode.device if self._parameterNode
                         else "auto")

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
            if metadata.mirror_tolerance_mm is None:  # no left-right pairs: nothing to set
                parameterNode.useMirrorTolerance = False
            elif not parameterNode.useMirrorTolerance:
                parameterNode.mirrorToleranceMm = metadata.mirror_tolerance_mm
        self.ui.useMirrorToleranceCheckBox.enabled = metadata.mirror_tolerance_mm is not None

    @staticmethod
    def _modelDescription(model: str, metadata: ModelMetadata) -> str:
        """HTML: description, landmarks, measured accuracy, model card link."""
        lines = [metadata.description, _("<b>Landmarks:</b> {names}").format(names=", ".join(metadata.landmarks))]
        thresholds, tolerances = metadata.found_rule_ranges()
        if metadata.rules_differ_by_landmark():  # all equal: the Advanced fields show the one value
            lines.append(_("<b>Calibrated per landmark:</b> confidence threshold {thresholds}").format(
                thresholds=thresholds)
                + ("" if tolerances is None else _(", mirror tolerance {tolerances} mm").format(tolerances=tolerances))
                + _(" (the Advanced fields, ticked, set one value for all)."))
        accuracy = measured_error_text(metadata)
        if accuracy:
            lines.append(_("<b>Measured 3D error (mean / median):</b> {accuracy}.").format(accuracy=accuracy))
        card = MODEL_CARDS_DIR / f"{model}.md"
        if (BUNDLED_DIR / f"{model}.pt").is_file() and card.is_file():
            lines.append('<a href="{url}">{text}</a>'.format(url=card.as_uri(), text=_("Model card")))
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
        """Whether PyTorch can be used: offers PyTorch's one-click install (PyTorch extension) when it is missing,
        then imports it (once per session) and lists the devices it finds; a PyTorch that fails to load is shown as
        an error, and the panel stays usable."""
        if not self._torchInstalled():
            return False
        if self._devicesFound:
            return True
        with slicer.util.WaitCursor():
            try:
                found, failure = available_devices(), None  # imports torch and initialises CUDA: seconds
            except Exception as error:  # a broken torch install raises anything from OSError to RuntimeError
                found, failure = {}, error
        if failure is not None:
            logging.error("PyTorch could not be loaded", exc_info=failure)
            slicer.util.errorDisplay(_("PyTorch is installed but could not be loaded ({error}). Reinstall it: "
                                       "uninstall and install the 'PyTorch' extension from the Extensions Manager, "
                                       "restart Slicer, and click the button again.").format(error=failure))
            return False
        self._devicesFound = True
        self._populateDevices(found)
        return True

    def _torchInstalled(self) -> bool:
        """Whether PyTorch is installed; offers to install it through the PyTorch extension when it is not."""
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
        if not slicer.util.confirmOkCancelDisplay(_("Landmark Detector needs PyTorch, which is not installed yet. "
                                                    "Install it now (a large download)?")):
            return False
        with slicer.util.tryWithErrorDisplay(_("PyTorch could not be installed."), waitCursor=True):
            if torchLogic.installTorch(askConfirmation=False) is not None:
                return True
        slicer.util.errorDisplay(_("Landmark Detector needs PyTorch, which was not installed."))
        return False

    def _overrides(self) -> dict[str, Any]:
        """The Advanced settings the user ticked, as detect() arguments."""
        parameterNode = self._parameterNode
        return {
            "threshold": parameterNode.threshold if parameterNode.useThreshold else None,
            "tableRemovalMm": parameterNode.tableRemovalMm if parameterNode.useTableRemoval else None,
            "confidenceThreshold": (parameterNode.confidenceThreshold if parameterNode.useConfidenceThreshold
                                    else None),
            "mirrorToleranceMm": parameterNode.mirrorToleranceMm if parameterNode.useMirrorTolerance else None,
        }

    def onDetectButton(self) -> None:
        """Detect with a progress dialog; the scene changes only when detection succeeded."""
        if self._running:
            return
        parameterNode = self._parameterNode
        outputPoints = parameterNode.outputPoints
        if outputPoints and outputPoints.GetNumberOfControlPoints() and not slicer.util.confirmOkCancelDisplay(
                _("Replace the {count} points of '{name}' with the detected landmarks?").format(
                    count=outputPoints.GetNumberOfControlPoints(), name=outputPoints.GetName())):
            return
        if not self._torchReady():
            return
        with slicer.util.tryWithErrorDisplay(_("Landmark detection failed.")):
            inputVolume, model = parameterNode.inputVolume, parameterNode.model
            try:
                landmarks = self._withProgress(_("Detecting landmarks"), lambda progress, shouldCancel: (
                    self.logic.detectLandmarks(inputVolume, model, parameterNode.device, **self._overrides(),
                                               progress=progress, shouldCancel=shouldCancel)))
            except Cancelled:
                slicer.util.showStatusMessage(_("Cancelled; no landmarks added."), 5000)
                return
            points = self.logic.updatePointList(landmarks, outputPoints, self.logic.pointListName(inputVolume))
            if parameterNode.showProjection:
                self.logic.addProjectionVolume(landmarks, _("{volume} projection").format(volume=inputVolume.GetName()))
            self._showResults(landmarks, points)
            self._warning = self.logic.detectionWarning(landmarks, model, userThreshold=parameterNode.useThreshold)
            self._fillResultsTable()

    def _withProgress(self, title: str, work: Callable[[Callable[[float, str], None], Callable[[], bool]], Any]) -> Any:
        """Run work(progress, shouldCancel) under an application-modal progress dialog whose Cancel button stops it.

        While it runs, the Detect and Fine-tune buttons do nothing and closing the scene cancels the work.
        """
        dialog = slicer.util.createProgressDialog(windowTitle=title, labelText=title, maximum=100)
        dialog.setWindowModality(qt.Qt.ApplicationModal)  # no second run, no scene close from the main window
        self._running, self._cancelRequested = title, False

        def progress(fraction: float, message: str) -> None:
            dialog.value = round(100 * fraction)
            dialog.labelText = message
            slicer.app.processEvents()

        def shouldCancel() -> bool:
            slicer.app.processEvents()  # long steps check this often: it keeps the dialog responsive
            return dialog.wasCanceled or self._cancelRequested

        try:
            return work(progress, shouldCancel)
        finally:
            self._running = ""
            dialog.close()

    def _showResults(self, landmarks: Optional[Landmarks], points: Optional[vtkMRMLMarkupsFiducialNode]) -> None:
        """Show a detection in the table, and keep the table in step with its point list."""
        for event in POINT_EVENTS if self._resultPoints is not None else ():
            self.removeObserver(self._resultPoints, event, self._fillResultsTable)
        self._landmarks, self._resultPoints, self._warning = landmarks, points, ""
        for event in POINT_EVENTS if points is not None else ():
            self.addObserver(points, event, self._fillResultsTable)
        self._fillResultsTable()

    def _fillResultsTable(self, caller=None, event=None) -> None:
        points = self._resultPoints
        rows = [] if points is None else result_rows(self._landmarks, self.logic.pointListFromNode(points))
        self._resultRows = rows
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
        text = _("{found} of {total} landmarks placed in point list '{name}'.").format(
            found=found, total=len(rows), name=points.GetName())
        self.ui.resultsLabel.text = text + (" " + self._warning if self._warning else "")

    def onResultClicked(self, row: int, column: int) -> None:
        """Jump the views to a placed landmark, or start placing a landmark that was not found (the row's point is
        found by its label, so reordering the points keeps the rows right)."""
        points = self._resultPoints
        if points is None or points.GetScene() is None or row >= len(self._resultRows):
            return
        index = self._resultRows[row].point_index
        if index >= points.GetNumberOfControlPoints():
            return
        markupsLogic = slicer.modules.markups.logic()
        if points.GetNthControlPointPositionStatus(index) == points.PositionDefined:
            markupsLogic.JumpSlicesToNthPointInMarkup(points.GetID(), index, True)
        else:
            points.SetControlPointPlacementStartIndex(index)
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
        if self._running:
            return
        parameterNode = self._parameterNode
        name = parameterNode.finetuneModelName
        with slicer.util.tryWithErrorDisplay(_("Fine-tuning failed.")):
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
