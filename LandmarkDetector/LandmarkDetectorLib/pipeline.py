"""Landmark detection: volume -> projection -> canvas -> network -> 3D points (DESIGN §4)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .framing import Canvas, CanvasSpec, canvas_origin_uv, frame
from .markups import PointList
from .model import LandmarkModel, load_model
from .progress import CancelCheck, ProgressCallback, check_cancel, report
from .projection import ProjectedImage, ProjectionConfig, project_volume


@dataclass(frozen=True)
class Landmarks:
    """Detected landmarks.

    Attributes:
        names: landmark names, in model order.
        points_ras: (N, 3) positions in RAS mm (also given for landmarks judged not in view).
        confidence: (N,) probability that each landmark is in the scanned field of view.
        in_view: (N,) bool, confidence >= the model's (or the caller's) threshold.
        canvas: what the network saw, for previews.
    """

    names: tuple[str, ...]
    points_ras: NDArray[np.float64]
    confidence: NDArray[np.float64]
    in_view: NDArray[np.bool_]
    canvas: Canvas | None = None

    def to_point_list(self, name: str = "Landmarks") -> PointList:
        """Markups point list: labels = names, confidence in the description, not-found points undefined."""
        descriptions = [f"confidence {c:.3f}" + ("" if ok else "; not found")
                        for c, ok in zip(self.confidence, self.in_view, strict=True)]
        return PointList.from_arrays(self.names, self.points_ras, descriptions=descriptions, defined=self.in_view,
                                     name=name)


def landmark_found(uv: NDArray[np.float64], probability: NDArray[np.float64], in_field: NDArray[np.bool_],
                   threshold: float) -> NDArray[np.bool_]:
    """A landmark is found when the network is confident it is in view and places it inside the scanned field.

    Args:
        uv: (B, N, 2) predicted canvas pixels.
        probability: (B, N) in-view probabilities.
        in_field: (B, H, W) canvas pixels inside the projected volume.
        threshold: probability needed.
    Returns:
        (B, N) bool.
    """
    found = probability >= threshold
    for b, field in enumerate(in_field):
        rows, cols = np.flatnonzero(field.any(axis=1)), np.flatnonzero(field.any(axis=0))
        if not rows.size:
            found[b] = False
            continue
        u, v = uv[b, :, 0], uv[b, :, 1]
        found[b] &= (u >= cols[0] - 0.5) & (u <= cols[-1] + 0.5) & (v >= rows[0] - 0.5) & (v <= rows[-1] + 0.5)
    return found


def projection_settings(model: LandmarkModel, threshold: float | None = None,
                        table_removal_mm: float | None = None) -> ProjectionConfig:
    """The model's projection settings with the given ones replaced (None keeps the model's)."""
    changes = {"threshold": threshold, "table_removal_mm": table_removal_mm}
    return dataclasses.replace(model.metadata.projection, **{k: v for k, v in changes.items() if v is not None})


def model_projection(volume_kji: NDArray, ijk_to_ras: ArrayLike, projection: ProjectionConfig, spec: CanvasSpec, *,
                     progress: ProgressCallback | None = None,
                     should_cancel: CancelCheck | None = None) -> ProjectedImage:
    """Project a volume as a model needs it: its projection settings at its canvas pixel size.

    Projecting straight at the canvas pixel size means oblique volumes are resampled only as finely as needed.
    """
    projection = dataclasses.replace(projection, pixel_spacing_mm=spec.pixel_spacing_mm)
    return project_volume(volume_kji, ijk_to_ras, projection, progress=progress, should_cancel=should_cancel)


def framed(image: ProjectedImage, spec: CanvasSpec, offset_px: ArrayLike | None = None) -> Canvas:
    """The canvas centred on the silhouette, shifted by ``offset_px`` canvas pixels (training jitter)."""
    origin = canvas_origin_uv(image, spec)
    if offset_px is not None:
        origin = origin + np.asarray(offset_px, dtype=np.float64)
    return frame(image, spec, origin_uv=origin)


def detect_landmarks(volume_kji: NDArray, ijk_to_ras: ArrayLike, model: LandmarkModel | str = "wholebody-ct",
                     device: str = "auto", *, confidence_threshold: float | None = None,
                     projection: ProjectionConfig | None = None, progress: ProgressCallback | None = None,
                     should_cancel: CancelCheck | None = None) -> Landmarks:
    """Detect anatomical landmarks in a CT/MR volume.

    Args:
        volume_kji: voxels indexed [k, j, i] (slicer.util.arrayFromVolume order).
        ijk_to_ras: 4x4 voxel-to-RAS matrix, millimetres.
        model: a loaded bundle (``load_model``), or a model name or file path to load.
        device: where the network runs: "auto" (CUDA when present), "cpu" or "cuda". The projection runs on the CPU.
        confidence_threshold: in-view probability needed to report a landmark as found (default: the model's).
        projection: projection settings, e.g. another threshold (default: the model's; the pixel size is always
            the model's).
        progress: called with (fraction, message) between stages.
        should_cancel: checked between stages.
    Returns:
        Landmarks; points_ras is (N, 3), ordered as model.landmark_names.
    Raises:
        InputError: volume not 3D or empty, or ijk_to_ras singular; "cuda" without a GPU.
        ModelError: the model cannot be loaded.
        Cancelled: should_cancel() returned True between stages.
    """
    model = load_model(model, device) if isinstance(model, str) else model.to(device)
    metadata = model.metadata
    threshold = metadata.confidence_threshold if confidence_threshold is None else confidence_threshold
    image = model_projection(volume_kji, ijk_to_ras, projection or metadata.projection, metadata.canvas,
                             progress=None if progress is None else lambda f, m: progress(0.8 * f, m),
                             should_cancel=should_cancel)
    canvas = framed(image, metadata.canvas)
    check_cancel(should_cancel)
    report(progress, 0.85, "Running the network")
    uv, depth, probability = model.predict(canvas.network_input()[None])
    check_cancel(should_cancel)
    uvd = np.column_stack([uv[0], canvas.image.denormalize_depth(depth[0])])
    report(progress, 1.0, "Done")
    found = landmark_found(uv, probability, canvas.in_field[None], threshold)[0]
    return Landmarks(names=metadata.landmarks, points_ras=canvas.image.uvd_to_ras(uvd), confidence=probability[0],
                     in_view=found, canvas=canvas)
