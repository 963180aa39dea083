"""Landmark detection on MRML nodes: converts between volume and point list nodes and the core's arrays."""

import importlib.util
import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

import numpy as np
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from LandmarkDetectorLib import InputError, LandmarkModel, Landmarks, detect_landmarks, load_model
from LandmarkDetectorLib.images import depth_to_uint8
from LandmarkDetectorLib.markups import MarkupsPoint, PointList, write_markups
from LandmarkDetectorLib.model import DEFAULT_MODEL, model_file, read_metadata, user_model_path
from LandmarkDetectorLib.pipeline import detection_warning, projection_settings
from LandmarkDetectorLib.volume_io import write_volume

from .parameters import LandmarkDetectorParameterNode


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
                        shouldCancel: Optional[Callable[[], bool]] = None,
                        mirrorToleranceMm: Optional[float] = None) -> Landmarks:
        """Detect landmarks without changing the scene (see detect())."""
        volumeKJI, ijkToWorld = self.volumeArrays(inputVolume)
        if progress:
            progress(0.0, _("Loading the model"))
        loaded = self.loadModel(model, device)
        return detect_landmarks(volumeKJI, ijkToWorld, loaded, device, confidence_threshold=confidenceThreshold,
                                mirror_tolerance_mm=mirrorToleranceMm,
                                projection=projection_settings(loaded, threshold, tableRemovalMm), progress=progress,
                                should_cancel=shouldCancel)

    def detect(self, inputVolume: Optional[vtkMRMLScalarVolumeNode],
               outputPoints: Optional[vtkMRMLMarkupsFiducialNode] = None,
               model: Union[str, LandmarkModel] = DEFAULT_MODEL,
               device: str = "auto", confidenceThreshold: Optional[float] = None, threshold: Optional[float] = None,
               tableRemovalMm: Optional[float] = None, progress: Optional[Callable[[float, str], None]] = None,
               shouldCancel: Optional[Callable[[], bool]] = None,
               mirrorToleranceMm: Optional[float] = None) -> vtkMRMLMarkupsFiducialNode:
        """Detect a model's landmarks in a volume and put them in a point list.

        Args:
            inputVolume: scalar 3D volume, possibly under linear transforms.
            outputPoints: point list whose points are replaced; None adds a new list "<volume> landmarks".
            model: model name (bundled or user model), model file path, or a loaded model.
            device: "auto", "cpu" or "cuda".
            confidenceThreshold, threshold, tableRemovalMm, mirrorToleranceMm: replace the model's settings (None
                keeps them).
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
                                         progress, shouldCancel, mirrorToleranceMm=mirrorToleranceMm)
        return self.updatePointList(landmarks, outputPoints, self.pointListName(inputVolume))

    @staticmethod
    def detectionWarning(landmarks: Landmarks, model: Union[str, LandmarkModel], userThreshold: bool = False) -> str:
        """One line when the detection as a whole looks wrong (nothing found, another modality, a small field of
        view); "" when it does not. ``userThreshold``: the body/air threshold was set by hand."""
        metadata = model.metadata if isinstance(model, LandmarkModel) else read_metadata(model_file(model))
        return detection_warning(landmarks, metadata, user_threshold=userThreshold)

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
