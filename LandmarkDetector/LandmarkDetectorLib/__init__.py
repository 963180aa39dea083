"""LandmarkDetector's pure-Python core: projection, landmark files, models and detection.

Never imports slicer, qt or vtk: the same code serves the Slicer module, the command line and training.
"""

from .errors import Cancelled, FileFormatError, InputError, LandmarkDetectorError, ModelError
from .model import LandmarkModel, available_models, load_model
from .pipeline import Landmarks, detect_landmarks
from .projection import ProjectedImage, ProjectionConfig, project_volume
from .volume_io import Volume, read_volume, write_volume

__version__ = "0.1.0"

__all__ = [
    "Cancelled",
    "FileFormatError",
    "InputError",
    "LandmarkDetectorError",
    "LandmarkModel",
    "Landmarks",
    "ModelError",
    "ProjectedImage",
    "ProjectionConfig",
    "Volume",
    "available_models",
    "detect_landmarks",
    "load_model",
    "project_volume",
    "read_volume",
    "write_volume",
]
