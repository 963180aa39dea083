"""The panel's settings, stored in the scene's parameter node."""

from typing import Annotated

from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper


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
    useMirrorTolerance: bool = False
    mirrorToleranceMm: Annotated[float, WithinRange(0.1, 1000.0)] = 10.0
    showProjection: bool = False
    outputPoints: vtkMRMLMarkupsFiducialNode
    finetuneModelName: str = "my-model"
    finetuneSteps: Annotated[int, WithinRange(1, 100000)] = 300
    finetuneFolds: Annotated[int, WithinRange(0, 100)] = 5
