"""Make Slicer's real MRML library (PyPI ``slicer-core``) usable from pytest.

slicer-core provides ``import slicer`` with real MRML nodes and storage nodes but no application, so no
``slicer.mrmlScene``: each test gets a fresh scene assigned there, so that ``slicer.util`` functions work.
Without slicer-core every test module of this folder is reported as skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

SKIP_REASON = "slicer-core not installed (pip install slicer-core)"

try:
    import slicer
except ImportError:
    slicer = None

if slicer is None:

    class _SkippedModule(pytest.Module):
        """A test module that is reported as skipped instead of failing on ``import slicer``."""

        def collect(self):
            pytest.skip(SKIP_REASON)

    def pytest_pycollect_makemodule(module_path, parent):
        """Skip this folder's test modules (pytest.skip in a conftest fails when it is the initial one)."""
        return _SkippedModule.from_parent(parent, path=module_path)

else:

    @pytest.fixture(autouse=True)
    def mrml_scene() -> Iterator[slicer.vtkMRMLScene]:
        """A fresh scene, also set as ``slicer.mrmlScene``, with the selection node every Slicer scene has."""
        scene = slicer.vtkMRMLScene()
        # The application creates this singleton; markups nodes and the Markups logic look for it.
        selection = slicer.vtkMRMLSelectionNode()
        selection.SetSingletonTag("Singleton")
        scene.AddNode(selection)
        slicer.mrmlScene = scene
        yield scene
        del slicer.mrmlScene
        scene.Clear(True)

    @pytest.fixture
    def module(monkeypatch):
        """LandmarkDetector.py imported with the qt/slicer.app stand-ins of standins.py."""
        import standins

        return standins.import_module_file(monkeypatch)

    @pytest.fixture(scope="module")
    def hand_model():
        """The bundled hand-mr model on the CPU, loaded once per test module."""
        from LandmarkDetectorLib import load_model

        return load_model("hand-mr", "cpu")
