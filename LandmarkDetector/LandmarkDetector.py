"""3D Slicer module "Landmark Detector": the module's description and the classes Slicer looks up by name.

The panel, the logic and the self-test are in LandmarkDetectorSlicer; all computation is in LandmarkDetectorLib.
"""

import os
import sys
from pathlib import Path

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from LandmarkDetectorLib.model import USER_MODELS_ENV
from LandmarkDetectorSlicer.logic import LandmarkDetectorLogic
from LandmarkDetectorSlicer.sampledata import registerSampleData
from LandmarkDetectorSlicer.selftest import LandmarkDetectorTest
from LandmarkDetectorSlicer.widget import LandmarkDetectorPanel

__all__ = ["LandmarkDetector", "LandmarkDetectorLogic", "LandmarkDetectorTest", "LandmarkDetectorWidget"]

RELOADED_PACKAGES = ("LandmarkDetectorLib", "LandmarkDetectorSlicer")


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
            "The panel links each bundled model's card (training data and measured accuracy). To try the module, "
            "load <b>LandmarkDetectorSyntheticCT</b> or <b>LandmarkDetectorSyntheticHandMR</b> from the Sample Data "
            "module.")
        self.parent.acknowledgementText = _(
            "The method follows G. Riegler, M. Urschler, M. Ruether, H. Bischof, D. Stern: "
            "Anatomical landmark detection in medical applications driven by synthetic data, "
            "ICCV Workshops 2015.")
        # Models the user fine-tunes live beside Slicer's settings, unless the variable names another folder.
        os.environ.setdefault(USER_MODELS_ENV, str(Path(slicer.app.slicerUserSettingsFilePath).parent /
                                                   "LandmarkDetector" / "models"))
        slicer.app.connect("startupCompleted()", registerSampleData)


class LandmarkDetectorWidget(LandmarkDetectorPanel):
    """The module's panel (LandmarkDetectorSlicer.widget), which reloads its packages with this file."""

    def onReload(self) -> None:
        """Reload LandmarkDetectorLib and LandmarkDetectorSlicer too: Slicer re-imports only this file.

        Their modules are forgotten so that this file's imports load them afresh; ``importlib.reload`` in any fixed
        order could leave a module bound to a stale dependency (pipeline to the old model module, say).
        """
        for name in [n for n in sys.modules if n.split(".")[0] in RELOADED_PACKAGES]:
            del sys.modules[name]
        super().onReload()
