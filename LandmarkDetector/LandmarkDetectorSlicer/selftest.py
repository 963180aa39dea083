"""The module's self-test, run in Slicer: the whole click path on a synthetic hand, with the bundled hand-mr model."""

import numpy as np
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from LandmarkDetectorLib import Cancelled, InputError
from LandmarkDetectorLib.phantom import hand_phantom

from .logic import LandmarkDetectorLogic
from .widget import LandmarkDetectorPanel


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
    def _enterModule() -> LandmarkDetectorPanel:
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
