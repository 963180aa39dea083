"""3D Slicer module "Landmark Detector": module metadata. The panel, logic and self-test follow in issue 6."""

from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule


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
            "and a depth image that a neural network reads. "
            '<a href="https://github.com/LandmarkDetector/SlicerLandmarkDetector#readme">Documentation</a>.')
        self.parent.acknowledgementText = _(
            "The method follows G. Riegler, M. Urschler, M. Ruether, H. Bischof, D. Stern: "
            "Anatomical landmark detection in medical applications driven by synthetic data, "
            "ICCV Workshops 2015.")
