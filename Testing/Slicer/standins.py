"""The few stand-ins that let LandmarkDetector.py (with its LandmarkDetectorSlicer package) be imported and its panel
set up against slicer-core's real MRML.

slicer-core has MRML, ``slicer.util`` and ``VTKObservationMixin``, but no application (``slicer.app``, ``qt``,
``slicer.modules``), no ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper`` or ``slicer.i18n``.
Here:

- ``qt`` and ``slicer.app`` are ``Anything``: every attribute and call gives another ``Anything``.
- ``slicer.util.loadUI`` reads the real .ui file: each named widget becomes a ``Widget`` carrying the properties
  written there, so the panel code fails on a widget name the .ui lacks.
- The parameter node wrapper stores typed values in the real vtkMRMLScriptedModuleNode, as Slicer's does (node
  references for nodes, strings for the rest), and ``connectGui`` checks that every ``SlicerParameterName`` of the
  .ui names a parameter. It binds no widgets: Slicer's own GUI binding stays untested here.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
import typing
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

import slicer

MODULE_FILE = Path(__file__).resolve().parents[2] / "LandmarkDetector" / "LandmarkDetector.py"


class Anything:
    """Stands in for any Qt object: attributes and calls give another Anything; ``|`` combines flags."""

    def __getattr__(self, name: str) -> Anything:
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything()

    def __call__(self, *args, **kwargs) -> Anything:
        return Anything()

    def __or__(self, other) -> Anything:
        return self


class Widget(Anything):
    """A widget of the .ui file: its properties are attributes; signals connect to slots that ``emit`` calls."""

    def __init__(self, className: str, name: str, properties: dict[str, object]) -> None:
        self.className, self.objectName = className, name
        self.dynamicProperties = properties.pop("dynamic")
        self.__dict__.update(properties)
        self.slots: dict[str, list] = {}
        self.rowCount = 0
        self.currentIndex = -1

    def property(self, name: str):
        return self.dynamicProperties.get(name)

    def connect(self, signal: str, slot) -> None:
        self.slots.setdefault(signal, []).append(slot)

    def emit(self, signal: str, *args) -> None:
        """Call the connected slots; like PythonQt, with only as many arguments as a slot takes."""
        for slot in self.slots.get(signal, []):
            slot(*args[:len(inspect.signature(slot).parameters)])

    def click(self) -> None:
        self.emit("clicked(bool)", False)

    def setRowCount(self, count: int) -> None:
        self.rowCount = count

    def setCurrentIndex(self, index: int) -> None:
        self.currentIndex = index


def _value(element: ET.Element):
    """The Python value of a .ui <property> element."""
    child = element[0]
    if child.tag == "bool":
        return child.text == "true"
    if child.tag in ("number", "double"):
        return float(child.text)
    if child.tag == "stringlist":
        return [item.text for item in child]
    return child.text or ""


def load_ui(path: str) -> Widget:
    """The top-level widget of a .ui file; its named child widgets are in ``children``."""
    root = ET.parse(path).getroot().find("widget")
    widgets = {}
    for element in root.iter("widget"):
        properties: dict[str, object] = {"dynamic": {}}
        for prop in element.findall("property"):
            target = properties["dynamic"] if prop.get("stdset") == "0" else properties
            target[prop.get("name")] = _value(prop)
        widgets[element.get("name")] = Widget(element.get("class"), element.get("name"), properties)
    top = widgets.pop(root.get("name"))
    top.children = widgets
    return top


class ProgressDialog(Anything):
    """slicer.util.createProgressDialog's dialog, never cancelled."""

    wasCanceled = False


class WithinRange:
    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum, self.maximum = minimum, maximum


def _serializer(hint):
    """(read, write, default) for a parameter type, storing it as Slicer's parameter node wrapper does."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if isinstance(hint, type) and issubclass(hint, slicer.vtkMRMLNode):
        def write_node(node, name, value):
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        return (lambda node, name: node.GetNodeReference(name)), write_node, None
    if hint is bool:
        return ((lambda node, name: node.GetParameter(name) == "True"),
                (lambda node, name, value: node.SetParameter(name, str(bool(value)))), False)
    return ((lambda node, name: hint(node.GetParameter(name))),
            (lambda node, name, value: node.SetParameter(name, str(value))), hint())


def parameterNodeWrapper(cls):
    """Typed properties over a vtkMRMLScriptedModuleNode, with the wrapper methods the module uses."""
    parameters = {}
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        read, write, default = _serializer(hint)
        parameters[name] = (read, write, getattr(cls, name, default))
        setattr(cls, name, property(lambda self, n=name, r=read: r(self.parameterNode, n),
                                    lambda self, value, n=name, w=write: w(self.parameterNode, n, value)))

    def init(self, parameterNode):
        self.parameterNode = parameterNode
        for name, (_read, write, default) in parameters.items():
            if not parameterNode.HasParameter(name):
                write(parameterNode, name, default)

    def connectGui(self, gui):
        names = {w.property("SlicerParameterName") for w in vars(gui).values()} - {None}
        unknown = names - set(parameters)
        if unknown:
            raise ValueError(f"Cannot find a param with the given name: {sorted(unknown)}")
        return len(names)

    cls.__init__ = init
    cls.allParameters = parameters
    cls.connectGui = connectGui
    cls.disconnectGui = lambda self, tag: None
    cls.StartModify = lambda self: self.parameterNode.StartModify()
    cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback,
                                                                                                 priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    return cls


class ScriptedLoadableModule:
    def __init__(self, parent) -> None:
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.parent = parent or Anything()
        self.layout = Anything()

    def setup(self) -> None:
        pass

    def resourcePath(self, filename: str) -> str:
        return str(Path(sys.modules[type(self).__module__].__file__).parent / "Resources" / filename)


class ScriptedLoadableModuleLogic:
    """Its parameter node is the scene's singleton vtkMRMLScriptedModuleNode tagged with the module name."""

    def getParameterNode(self):
        moduleName = type(self).__name__.removesuffix("Logic")
        node = slicer.mrmlScene.GetSingletonNode(moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(moduleName)
            node.SetAttribute("ModuleName", moduleName)
            node = slicer.mrmlScene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message: str, msec: int = 0) -> None:
        pass


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def import_module_file(monkeypatch):
    """Install the stand-ins (undone by ``monkeypatch`` after the test) and import LandmarkDetector.py and
    LandmarkDetectorSlicer afresh, from the module's folder as Slicer does."""
    scripted = _module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
                       ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
                       ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
                       ScriptedLoadableModuleTest=ScriptedLoadableModuleTest)
    modules = {
        "qt": Anything(),
        "slicer.ScriptedLoadableModule": scripted,
        "slicer.parameterNodeWrapper": _module("slicer.parameterNodeWrapper", WithinRange=WithinRange,
                                               parameterNodeWrapper=parameterNodeWrapper),
        "slicer.i18n": _module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "app", Anything(), raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda top: types.SimpleNamespace(**top.children))
    monkeypatch.setattr(slicer.util, "createProgressDialog", lambda *args, **kwargs: ProgressDialog())
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda *args, **kwargs: None)
    for name in [n for n in sys.modules if n.split(".")[0] == "LandmarkDetectorSlicer"]:
        monkeypatch.delitem(sys.modules, name)  # imported under another test's stand-ins
    monkeypatch.syspath_prepend(str(MODULE_FILE.parent))
    module = exec_module_file()
    monkeypatch.setitem(sys.modules, "LandmarkDetector", module)
    return module


def exec_module_file() -> types.ModuleType:
    """LandmarkDetector.py executed afresh, as Slicer's reload does it: the modules it imports come from
    ``sys.modules`` when they are there."""
    spec = importlib.util.spec_from_file_location("LandmarkDetector", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
