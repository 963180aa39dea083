"""Render the module's panel, LandmarkDetector/Resources/UI/LandmarkDetector.ui, to the README's pictures.

The .ui file is loaded as it is by Qt's own QUiLoader, offscreen: layout, labels, tooltips and the checkbox-to-spinbox
connections are the file's. Only Slicer's and CTK's widgets, which plain Qt lacks, are stood in for by look-alikes
defined here (each extends the base class the file's ``<customwidgets>`` names):

- ``ctkCollapsibleButton``: a button-like header with an arrow and its title over its contents, which it hides when
  collapsed;
- ``qMRMLNodeComboBox``: a combo box carrying the node selector's properties (its "none" entry is ``noneDisplay``);
- ``qMRMLWidget``: a plain widget.

What LandmarkDetectorSlicer/widget.py writes into the panel at run time (model and device lists, the model
description, the Advanced values of the model, the results table) is filled in below, marked "run-time content". The
results are a real detection with the bundled wholebody-ct model on a synthetic CT; node names are made up.

Run (needs the dev environment for the detection, plus PySide6-Essentials from the ``docs`` extra)::

    pip install -e ".[dev,docs]"
    python scripts/render_panel.py            # writes Resources/Screenshots/panel.png and panel_finetune.png

Options: ``--out DIR``, ``--width PX`` (default 450).
"""

from __future__ import annotations

import argparse
import ast
import os
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Property, QRect, Qt, QtMsgType, qInstallMessageHandler  # noqa: E402
from PySide6.QtGui import QBrush, QColor, QPainter, QPalette  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QComboBox,
    QHeaderView,
    QStyle,
    QStyleOption,
    QStyleOptionButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

REPO = Path(__file__).resolve().parents[1]
WIDGET_FILE = REPO / "LandmarkDetector" / "LandmarkDetectorSlicer" / "widget.py"
UI_FILE = REPO / "LandmarkDetector" / "Resources" / "UI" / "LandmarkDetector.ui"
QWIDGETSIZE_MAX = (1 << 24) - 1


class ctkCollapsibleButton(QWidget):  # noqa: N801 (the .ui file's class name)
    """Look-alike of CTK's collapsible button: a raised header (arrow, title) above its contents."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._collapsed = False
        self._headerHeight = self.fontMetrics().height() + 12
        self.setContentsMargins(0, self._headerHeight, 0, 0)  # the contents' layout starts under the header

    def getText(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        self._text = text
        self.update()

    def isCollapsed(self) -> bool:
        return self._collapsed

    def setCollapsed(self, collapsed: bool) -> None:
        """Hide or show the contents (call again once the children exist: the loader sets properties first)."""
        self._collapsed = collapsed
        for child in self.children():
            if isinstance(child, QWidget):
                child.setVisible(not collapsed)
        if collapsed:
            self.setFixedHeight(self._headerHeight)
        else:
            self.setMinimumHeight(0)
            self.setMaximumHeight(QWIDGETSIZE_MAX)
        self.update()

    text = Property(str, getText, setText)
    collapsed = Property(bool, isCollapsed, setCollapsed)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        button = QStyleOptionButton()
        button.initFrom(self)
        button.rect = QRect(0, 0, self.width(), self._headerHeight)
        button.state |= QStyle.StateFlag.State_Raised
        self.style().drawControl(QStyle.ControlElement.CE_PushButtonBevel, button, painter, self)
        arrow = QStyleOption()
        arrow.initFrom(self)
        size = 9
        arrow.rect = QRect(8, (self._headerHeight - size) // 2, size, size)
        element = (QStyle.PrimitiveElement.PE_IndicatorArrowRight if self._collapsed
                   else QStyle.PrimitiveElement.PE_IndicatorArrowDown)
        self.style().drawPrimitive(element, arrow, painter, self)
        painter.drawText(QRect(8 + size + 6, 0, self.width() - size - 20, self._headerHeight),
                         int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), self._text)


def stored_property(name: str, kind: type, default: object) -> Property:
    """A Qt property that only stores its value (the loader sets it; nothing here acts on it)."""

    def set_value(self, value: object) -> None:
        self.__dict__[name] = value

    return Property(kind, lambda self: self.__dict__.get(name, default), set_value)


class qMRMLNodeComboBox(QComboBox):  # noqa: N801
    """Look-alike of Slicer's node selector: a combo box with the selector's properties (qMRMLNodeComboBox's
    defaults)."""

    nodeTypes = stored_property("nodeTypes", list, [])
    noneDisplay = stored_property("noneDisplay", str, "None")
    showChildNodeTypes = stored_property("showChildNodeTypes", bool, True)
    addEnabled = stored_property("addEnabled", bool, True)
    removeEnabled = stored_property("removeEnabled", bool, True)
    noneEnabled = stored_property("noneEnabled", bool, False)
    renameEnabled = stored_property("renameEnabled", bool, False)

    def setNodes(self, names: list[str]) -> None:
        """The scene's nodes of this type, after the "none" entry when the selector has one."""
        self.clear()
        self.addItems(([self.noneDisplay] if self.noneEnabled else []) + names)


class qMRMLWidget(QWidget):  # noqa: N801
    """Slicer's MRML-aware widget base class; nothing to show."""


QUIET = ("mrmlSceneChanged", "(sender name:", "(receiver name:", "propagateSizeHints")


def quiet_scene_connections(kind: QtMsgType, context, message: str) -> None:
    """Drop the warnings about the .ui's mrmlSceneChanged -> setMRMLScene connections (they need a MRML scene) and
    the offscreen platform's note on size hints."""
    if not any(text in message for text in QUIET):
        print(message)


def widget_constant(name: str):
    """A literal constant of LandmarkDetectorSlicer/widget.py (which imports slicer, so it is read, not imported)."""
    for node in ast.parse(WIDGET_FILE.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(name)


def load_panel() -> QWidget:
    loader = QUiLoader()
    for widget_class in (ctkCollapsibleButton, qMRMLNodeComboBox, qMRMLWidget):
        loader.registerCustomWidget(widget_class)
    panel = loader.load(str(UI_FILE))
    if panel is None:
        raise RuntimeError(f"{UI_FILE} could not be loaded: {loader.errorString()}")
    for button in panel.findChildren(ctkCollapsibleButton):
        button.setCollapsed(button.collapsed)
    return panel


def model_description(name: str) -> str:
    """The model description LandmarkDetectorPanel._modelDescription writes (same text and HTML)."""
    from LandmarkDetectorLib.model import measured_error_text, model_file, read_metadata

    metadata = read_metadata(model_file(name))
    lines = [metadata.description, "<b>Landmarks:</b> {names}".format(names=", ".join(metadata.landmarks))]
    thresholds, tolerances = metadata.found_rule_ranges()
    if metadata.rules_differ_by_landmark():
        lines.append(f"<b>Calibrated per landmark:</b> confidence threshold {thresholds}"
                     + ("" if tolerances is None else f", mirror tolerance {tolerances} mm")
                     + " (the Advanced fields, ticked, set one value for all).")
    accuracy = measured_error_text(metadata)
    if accuracy:
        lines.append(f"<b>Measured 3D error (mean / median):</b> {accuracy}.")
    card = WIDGET_FILE.parent.parent / "Resources" / "ModelCards" / f"{name}.md"  # widget.py's MODEL_CARDS_DIR
    lines.append(f'<a href="{card.as_uri()}">Model card</a>')
    return "<br>".join(lines)


def detection_rows():
    """A real detection: wholebody-ct on a synthetic CT, as the results table shows it."""
    from LandmarkDetectorLib import detect_landmarks, load_model
    from LandmarkDetectorLib.results import result_rows
    from LandmarkDetectorLib.synthetic.dataset import synthesize_case

    case = synthesize_case("body", 515_151, 3)  # one fingertip outside the scan: a not-found row
    landmarks = detect_landmarks(case.voxels_kji, case.ijk_to_ras, load_model("wholebody-ct", "cpu"), "cpu")
    return result_rows(landmarks, landmarks.to_point_list())


def fill(panel: QWidget) -> None:
    """Run-time content: what widget.py puts into the panel once a volume and the default model are selected (on a
    computer without a GPU), after one detection."""
    from LandmarkDetectorLib.model import available_models, default_model, model_file, read_metadata

    child = panel.findChild
    volume, points = "Whole-body CT", "Whole-body CT landmarks"  # made-up node names
    child(qMRMLNodeComboBox, "inputVolumeSelector").setNodes([volume])
    child(qMRMLNodeComboBox, "outputPointsSelector").setNodes([points])
    child(qMRMLNodeComboBox, "caseVolumeSelector").setNodes([volume])
    child(qMRMLNodeComboBox, "casePointsSelector").setNodes([points])

    model = default_model()
    models = list(available_models())
    child(QComboBox, "modelComboBox").addItems([*models, "Load model file..."])
    child(QComboBox, "modelComboBox").setCurrentIndex(models.index(model))
    child(QWidget, "modelInfoLabel").setText(model_description(model))
    child(QComboBox, "deviceComboBox").addItems(["Automatic (GPU if found)", "CPU"])

    metadata = read_metadata(model_file(model))  # unticked Advanced fields show the model's settings
    child(QWidget, "tableRemovalSpinBox").setValue(metadata.projection.table_removal_mm)
    child(QWidget, "confidenceThresholdSpinBox").setValue(metadata.confidence_threshold)
    if metadata.mirror_tolerance_mm is not None:
        child(QWidget, "mirrorToleranceSpinBox").setValue(metadata.mirror_tolerance_mm)
    child(QWidget, "detectButton").setEnabled(True)

    rows = detection_rows()
    colors = widget_constant("ROW_COLORS")
    table = child(QTableWidget, "resultsTable")
    table.setRowCount(len(rows))
    for row, result in enumerate(rows):
        for column, text in enumerate(result.cells()):
            item = QTableWidgetItem(text)
            if result.level in colors:
                item.setBackground(QBrush(QColor(colors[result.level])))
            table.setItem(row, column, item)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.setMinimumHeight(table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(len(rows))) + 4)
    found = sum(result.level != "not_found" for result in rows)
    child(QWidget, "resultsLabel").setText(
        f"{found} of {len(rows)} landmarks placed in point list '{points}'.")

    cases = child(QTableWidget, "finetuneCasesTable")
    cases.setRowCount(3)
    for row in range(3):
        cases.setItem(row, 0, QTableWidgetItem(f"Patient {row + 1} CT"))
        cases.setItem(row, 1, QTableWidgetItem(f"Patient {row + 1} CT landmarks (corrected)"))
    child(QWidget, "finetuneModelNameLineEdit").setText("my-model")
    steps, folds = child(QWidget, "finetuneStepsSpinBox"), child(QWidget, "finetuneFoldsSpinBox")
    steps.setRange(1, 100000)  # the parameter node's WithinRange and defaults
    steps.setValue(300)
    folds.setRange(0, 100)
    folds.setValue(5)
    child(QWidget, "finetuneButton").setEnabled(True)


def slicer_palette() -> QPalette:
    """Slicer's light palette (its style is Fusion-based)."""
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.Button, QColor("#fcfcfc"))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#f4f4f4"))
    palette.setColor(QPalette.ColorRole.Highlight, QColor("#3d8ee2"))
    return palette


def render(panel: QWidget, width: int, path: Path) -> None:
    """Write the panel at ``width`` px, as tall as its sections (the .ui's bottom spacer left out)."""
    panel.resize(width, 10)
    panel.show()
    QApplication.processEvents()
    panel.resize(width, panel.sizeHint().height())
    QApplication.processEvents()
    sections = [w for w in panel.findChildren(QWidget) if w.parent() is panel and w.isVisible()]
    height = max(w.geometry().bottom() for w in sections) + panel.layout().contentsMargins().bottom()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab(QRect(0, 0, width, height)).save(str(path)):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({width} x {height} px)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "Resources" / "Screenshots")
    parser.add_argument("--width", type=int, default=450)
    args = parser.parse_args(argv)
    os.environ["LANDMARK_DETECTOR_MODELS"] = tempfile.mkdtemp()  # the bundled models only, not this user's
    qInstallMessageHandler(quiet_scene_connections)
    app = QApplication([])
    app.setStyle("Fusion")
    app.setPalette(slicer_palette())

    panel = load_panel()
    fill(panel)
    for name, collapsed in (("advancedCollapsibleButton", False), ("finetuneCollapsibleButton", True)):
        panel.findChild(ctkCollapsibleButton, name).setCollapsed(collapsed)
    render(panel, args.width, args.out / "panel.png")

    for name, collapsed in (("advancedCollapsibleButton", True), ("outputsCollapsibleButton", True),
                            ("resultsCollapsibleButton", True), ("finetuneCollapsibleButton", False)):
        panel.findChild(ctkCollapsibleButton, name).setCollapsed(collapsed)
    render(panel, args.width, args.out / "panel_finetune.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
