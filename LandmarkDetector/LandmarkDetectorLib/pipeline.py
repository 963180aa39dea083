"""Landmark detection: volume -> projection -> canvas -> network -> 3D points (DESIGN §4)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import geometry
from .errors import InputError
from .framing import Canvas, CanvasSpec, canvas_origin_uv, frame
from .limbtips import at_limb_tips
from .markups import PointList
from .model import LandmarkModel, ModelMetadata, load_model
from .progress import CancelCheck, ProgressCallback, check_cancel, report
from .projection import CT_AIR_THRESHOLD_HU, ProjectedImage, ProjectionConfig, project_volume
from .surface import at_skin, at_surface_extremes, extremes_disagreement
from .symmetry import mirror_partners, unmirror
from .thickness import at_depth_fractions

MIN_EXTENT_FRACTION = 0.05
"""The voxel grid (along each of its axes) and the body's silhouette must span at least this fraction of the model's
canvas (its shorter side, in mm); less is a slab or a speck that the network cannot read."""

EDGE_MARGIN_PX = 0.5
"""How far (canvas pixels) beyond the volume's edge a prediction may lie and still count as inside the scanned field.
A landmark is in view when it lies inside the volume's extent (voxel centres +- half a voxel), so one right at the
edge of a scan (the toes on the last slice, the vertex on the first) is in view; it must not be lost to the
network's sub-pixel error. Such a point is reported found and moved onto the volume's edge (``into_volume``)."""
LOW_CONFIDENCE_MARGIN = 0.5
"""A found landmark has low confidence below threshold + this share of the way from the threshold to 1 (0.925 for a
threshold of 0.85, 0.75 for 0.5), so that every model, whatever its threshold, can flag landmarks to check."""
SMALL_FIELD_FRACTION = 0.25
"""A silhouette whose longer side spans less than this fraction of the model's canvas (same axis) is much smaller
than the anatomy the model was made for."""
_MODEL_MODALITY = {"body": "CT", "hand": "MR"}  # the synthetic anatomy a model was trained on -> its scans' modality

_VIEW_AXIS_NAMES = {"ap": ("left-right", "superior-inferior"), "lr": ("anterior-posterior", "superior-inferior")}


@dataclass(frozen=True)
class Landmarks:
    """Detected landmarks.

    Attributes:
        names: landmark names, in model order.
        points_ras: (N, 3) positions in RAS mm (also given for landmarks judged not in view).
        confidence: (N,) probability that each landmark is in the scanned field of view.
        found: (N,) bool, the landmark is found: confidence >= the model's (or the caller's) threshold, placed
            inside the scanned field (for landmarks with an edge margin, ``ModelMetadata.landmark_edge_margins_mm``,
            placed at least that far inside its edges), and (for models with a mirror check) its mirror disagreement
            within tolerance.
        canvas: what the network saw, for previews.
        disagreement_mm: (N,) distance between the network's estimates on the canvas and on its left-right mirror,
            mm (NaN for models without a mirror check, and when not given); large where the network is guessing. For
            limb tips (``ModelMetadata.limb_tips``), between the limb ends found from the two estimates, and for
            surface extremes (``ModelMetadata.surface_extremes``), between the body's extremes found from them
            (infinite when either has none).
        confidence_threshold: (N,) the thresholds ``found`` was decided with (a number given: the same for all).
        mirror_tolerance_mm: (N,) the mirror tolerances ``found`` was decided with, mm (a number given: the same for
            all; None: no mirror check).
        near_edge: (N,) bool, not found because placed within its edge margin of the scanned field's edges
            (``ModelMetadata.landmark_edge_margins_mm``; None: none).
    """

    names: tuple[str, ...]
    points_ras: NDArray[np.float64]
    confidence: NDArray[np.float64]
    found: NDArray[np.bool_]
    canvas: Canvas | None = None
    disagreement_mm: NDArray[np.float64] | None = None
    confidence_threshold: NDArray[np.float64] | float = 0.5
    mirror_tolerance_mm: NDArray[np.float64] | float | None = None
    near_edge: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        count = len(self.names)
        if self.disagreement_mm is None:
            object.__setattr__(self, "disagreement_mm", np.full(count, np.nan))
        if self.near_edge is None:
            object.__setattr__(self, "near_edge", np.zeros(count, dtype=bool))
        object.__setattr__(self, "confidence_threshold", np.broadcast_to(
            np.asarray(self.confidence_threshold, dtype=np.float64), (count,)).copy())
        if self.mirror_tolerance_mm is not None:
            object.__setattr__(self, "mirror_tolerance_mm", np.broadcast_to(
                np.asarray(self.mirror_tolerance_mm, dtype=np.float64), (count,)).copy())

    @property
    def low_confidence_below(self) -> NDArray[np.float64]:
        """(N,) found landmarks with a confidence below this are worth checking (see LOW_CONFIDENCE_MARGIN)."""
        return self.confidence_threshold + LOW_CONFIDENCE_MARGIN * (1.0 - self.confidence_threshold)

    def to_point_list(self, name: str = "Landmarks") -> PointList:
        """Markups point list: labels = names, confidence (and mirror disagreement, or for a limb tip or surface
        extreme that either estimate reaches no end of the body) in the description, and for a landmark withheld by
        its edge margin that it lies too near the scan's edge; not-found points undefined."""
        descriptions = [f"confidence {c:.3f}"
                        + ("" if np.isnan(d) else "; no body end found near the estimates" if np.isinf(d)
                           else f"; mirror disagreement {d:.1f} mm")
                        + ("; too near the scan's edge" if edge else "") + ("" if ok else "; not found")
                        for c, d, edge, ok in zip(self.confidence, self.disagreement_mm, self.near_edge, self.found,
                                                  strict=True)]
        return PointList.from_arrays(self.names, self.points_ras, descriptions=descriptions, defined=self.found,
                                     name=name)


def landmark_found(uv: NDArray[np.float64], probability: NDArray[np.float64], in_field: NDArray[np.bool_],
                   threshold: float | NDArray[np.float64]) -> NDArray[np.bool_]:
    """A landmark is found when the network is confident it is in view and places it inside the scanned field.

    Args:
        uv: (B, N, 2) predicted canvas pixels.
        probability: (B, N) in-view probabilities.
        in_field: (B, H, W) canvas pixels inside the projected volume.
        threshold: probability needed: one, or (N,) per landmark.
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


def reported_found(inside: NDArray[np.bool_], probability: NDArray[np.float64], disagreement_mm: NDArray[np.float64],
                   threshold: float | NDArray[np.float64], tolerance_mm: float | NDArray[np.float64] | None
                   ) -> NDArray[np.bool_]:
    """Which landmarks detection reports as found: inside the scanned field, in-view probability at least
    ``threshold`` and, with a mirror check, a disagreement with the mirror of at most ``tolerance_mm`` (NaN, a
    landmark without a partner, passes). Thresholds and tolerances: one number, or one per landmark (the last axis)."""
    found = inside & (probability >= threshold)
    return found if tolerance_mm is None else found & ~(disagreement_mm > tolerance_mm)


def in_scanned_field(points_ras: NDArray[np.float64], ray_ras: NDArray[np.float64], ijk_to_ras: NDArray[np.float64],
                     shape_kji: tuple[int, ...], margin_mm: float) -> NDArray[np.bool_]:
    """Which points the scan saw: moved along the viewing ray to the depth of the volume's centre, each must lie
    inside the volume's extent (voxel centres +- half a voxel) or within ``margin_mm`` of it (``inside_field_mm``).

    Args:
        points_ras: (N, 3) RAS mm.
        ray_ras: (3,) viewing direction (the projection's depth axis).
        ijk_to_ras: 4x4 voxel-to-RAS matrix of the volume.
        shape_kji: the volume's shape.
        margin_mm: tolerance beyond the edge, mm.
    Returns:
        (N,) bool.
    """
    return inside_field_mm(points_ras, ray_ras, ijk_to_ras, shape_kji) >= -margin_mm


def inside_field_mm(points_ras: NDArray[np.float64], ray_ras: NDArray[np.float64], ijk_to_ras: NDArray[np.float64],
                    shape_kji: tuple[int, ...]) -> NDArray[np.float64]:
    """(N,) how far each point lies inside the volume's extent (voxel centres +- half a voxel), mm along the voxel
    axes, negative outside; measured after moving it along the viewing ray (``ray_ras``) to the depth of the
    volume's centre, so that the faces in front and behind do not count."""
    ray = ray_ras / np.linalg.norm(ray_ras)
    size_ijk = np.array(shape_kji[::-1], dtype=np.float64)
    centre_ras = geometry.apply_affine(ijk_to_ras, (size_ijk - 1) / 2)
    moved = points_ras + ((centre_ras - points_ras) @ ray)[:, None] * ray
    ijk = geometry.apply_affine(np.linalg.inv(ijk_to_ras), moved)
    return (np.minimum(ijk + 0.5, size_ijk - 0.5 - ijk) * geometry.spacing_mm(ijk_to_ras)).min(axis=1)


def into_volume(points_ras: NDArray[np.float64], ijk_to_ras: NDArray[np.float64], shape_kji: tuple[int, ...]
                ) -> NDArray[np.float64]:
    """Points moved to the nearest place inside the volume's extent (voxel centres +- half a voxel), RAS mm."""
    ijk = geometry.apply_affine(np.linalg.inv(ijk_to_ras), points_ras)
    clipped = np.clip(ijk, -0.5, np.array(shape_kji[::-1], dtype=np.float64) - 0.5)
    return geometry.apply_affine(ijk_to_ras, clipped)


def check_body(image: ProjectedImage, extent_mm: ArrayLike, spec: CanvasSpec, table_removal_mm: float) -> None:
    """Refuse what the network cannot read: a volume that is a thin slab, no body, or a body too small.

    Args:
        image: the volume's projection.
        extent_mm: (3,) size of the voxel grid along its i, j and k axes (voxel count x spacing), mm.
        spec: the model's canvas.
        table_removal_mm: the projection's table removal thickness (named in the no-body message).
    Raises:
        InputError: saying which, with the sizes found and the size needed.
    """
    min_mm = MIN_EXTENT_FRACTION * min(spec.width, spec.height) * spec.pixel_spacing_mm
    extent = np.asarray(extent_mm, dtype=np.float64)
    if extent.min() < min_mm:
        raise InputError(f"the volume is a slab too thin to hold the anatomy: its voxel grid spans "
                         f"{' x '.join(f'{e:.3g}' for e in extent)} mm, less than {min_mm:.3g} mm along one axis. "
                         "Give a 3D volume of the whole anatomy (and check the voxel spacing, in mm, in its header).")
    if not image.silhouette.any():
        removal = f" in a layer of at least {table_removal_mm:g} mm along a ray" if table_removal_mm > 0 else ""
        raise InputError(f"no body found in the volume: no voxel is above the body/air threshold "
                         f"{image.threshold:g}{removal}. Check that the volume holds the anatomy, or set a "
                         "threshold that suits its intensities (--threshold).")
    rows, cols = np.flatnonzero(image.silhouette.any(axis=1)), np.flatnonzero(image.silhouette.any(axis=0))
    su, sv = image.pixel_spacing_mm
    names = _VIEW_AXIS_NAMES[image.view]
    size = ((cols[-1] - cols[0] + 1) * su, (rows[-1] - rows[0] + 1) * sv)
    if min(size) < min_mm:
        raise InputError(
            f"the body is too small to find landmarks in: its silhouette spans {size[0]:.3g} x {size[1]:.3g} mm "
            f"({names[0]} x {names[1]}), less than {min_mm:.3g} mm across, in a field the model sees as "
            f"{spec.width * spec.pixel_spacing_mm:g} x {spec.height * spec.pixel_spacing_mm:g} mm. Check that the "
            f"volume holds the anatomy, its voxel spacing (mm) and the threshold ({image.threshold:g}, --threshold).")


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
    """The canvas centred on the silhouette, shifted by ``offset_px`` pixels of ``image`` (training jitter; callers
    project at the canvas's pixel size, so these are canvas pixels)."""
    origin = canvas_origin_uv(image, spec)
    if offset_px is not None:
        origin = origin + np.asarray(offset_px, dtype=np.float64)
    return frame(image, spec, origin_uv=origin)


class NetworkEstimates(NamedTuple):
    """The network's landmark estimates on one canvas (``network_estimates``)."""

    uv: NDArray[np.float64]
    """(N, 2) canvas pixels: the mean of the views."""
    depth: NDArray[np.float64]
    """(N,) normalized depth: the mean of the views."""
    probability: NDArray[np.float64]
    """(N,) in-view probability: the mean of the views."""
    disagreement_mm: NDArray[np.float64]
    """(N,) distance between the two views, mm (NaN without a mirror check)."""
    uv_views: NDArray[np.float64]
    """(V, N, 2) each view's uv: the canvas, then (with a mirror check) its mirror with paired labels swapped back."""
    depth_views: NDArray[np.float64]
    """(V, N) each view's normalized depth."""


def network_estimates(model: LandmarkModel, canvas: Canvas) -> NetworkEstimates:
    """The network's landmark estimates on one canvas.

    With a mirror check (``metadata.mirror_tolerance_mm``), the network also sees the canvas flipped left-right; the
    estimates are the mean of the two views (paired labels swapped back) and their distance is the disagreement: in
    the image plane only for the landmarks whose depth detection reads from the volume (``metadata.depth_fractions``),
    where the network's depth is not used.
    """
    partners = None if model.metadata.mirror_tolerance_mm is None else mirror_partners(model.metadata.landmarks)
    inputs = canvas.network_input()[None]
    if partners is None:
        uv, depth, probability = model.predict(inputs)
        return NetworkEstimates(uv[0], depth[0], probability[0], np.full(depth.shape[1], np.nan), uv[:1], depth[:1])
    uv, depth, probability = model.predict(np.concatenate([inputs, inputs[..., ::-1]]))
    uv_back, (depth_back, probability_back) = unmirror(uv[1], [depth[1], probability[1]], partners,
                                                       canvas.in_field.shape[1])
    spacing_mm = canvas.image.pixel_spacing_mm
    planar_mm = (uv[0] - uv_back) * np.array(spacing_mm)
    depth_mm = (depth[0] - depth_back) * canvas.image.depth_std_mm
    depth_mm[[name in model.metadata.depth_fractions for name in model.metadata.landmarks]] = 0.0
    disagreement = np.sqrt((planar_mm ** 2).sum(axis=1) + depth_mm ** 2)
    return NetworkEstimates((uv[0] + uv_back) / 2, (depth[0] + depth_back) / 2,
                            (probability[0] + probability_back) / 2, disagreement, np.stack([uv[0], uv_back]),
                            np.stack([depth[0], depth_back]))


def detect_landmarks(volume_kji: NDArray, ijk_to_ras: ArrayLike, model: LandmarkModel | str = "wholebody-ct",
                     device: str = "auto", *, confidence_threshold: float | None = None,
                     mirror_tolerance_mm: float | None = None, projection: ProjectionConfig | None = None,
                     progress: ProgressCallback | None = None,
                     should_cancel: CancelCheck | None = None) -> Landmarks:
    """Detect anatomical landmarks in a CT/MR volume.

    Args:
        volume_kji: voxels indexed [k, j, i] (slicer.util.arrayFromVolume order).
        ijk_to_ras: 4x4 voxel-to-RAS matrix, millimetres.
        model: a loaded bundle (``load_model``), or a model name or file path to load.
        device: where the network runs: "auto" (CUDA when present), "cpu" or "cuda". The projection runs on the CPU.
        confidence_threshold: in-view probability needed to report a landmark as found, for every landmark
            (default: the model's, per landmark).
        mirror_tolerance_mm: the largest disagreement with the left-right mirror at which a landmark is reported as
            found, for every landmark (default: the model's, per landmark; larger reports more landmarks, fewer of them
            right; ``inf`` keeps none out). Only for models with a mirror check.
        projection: projection settings, e.g. another threshold (default: the model's; the pixel size is always
            the model's).
        progress: called with (fraction, message) between stages.
        should_cancel: checked between stages.
    Returns:
        Landmarks; points_ras is (N, 3), ordered as model.landmark_names.
    Raises:
        InputError: volume not 3D, empty or blank, ijk_to_ras unusable, the volume a thin slab, no body or a body
            too small in it (``check_body``); a confidence threshold outside [0, 1]; a mirror tolerance that is not
            a positive number, or given for a model without a mirror check; "cuda" without a GPU.
        ModelError: the model cannot be loaded.
        Cancelled: should_cancel() returned True between stages.
    """
    model = load_model(model, device) if isinstance(model, str) else model.to(device)
    metadata = model.metadata
    if confidence_threshold is not None and not 0.0 <= confidence_threshold <= 1.0:
        raise InputError(f"confidence_threshold must be a probability between 0 and 1, got {confidence_threshold}.")
    if mirror_tolerance_mm is not None and metadata.mirror_tolerance_mm is None:
        raise InputError(f"model {metadata.name} has no mirror check (its landmarks have no left-right pairs): a "
                         "mirror tolerance does not apply to it; leave it out.")
    if mirror_tolerance_mm is not None and not mirror_tolerance_mm > 0:
        raise InputError(f"mirror_tolerance_mm must be a positive number of mm (inf: no landmark left out by the "
                         f"mirror check), got {mirror_tolerance_mm}.")
    threshold, tolerance_mm = metadata.found_rules(confidence_threshold, mirror_tolerance_mm)
    projection = projection or metadata.projection
    image = model_projection(volume_kji, ijk_to_ras, projection, metadata.canvas,
                             progress=None if progress is None else lambda f, m: progress(0.8 * f, m),
                             should_cancel=should_cancel)
    extent_mm = np.array(np.shape(volume_kji)[::-1]) * geometry.spacing_mm(ijk_to_ras)
    check_body(image, extent_mm, metadata.canvas, projection.table_removal_mm)
    canvas = framed(image, metadata.canvas)
    check_cancel(should_cancel)
    report(progress, 0.85, "Running the network")
    estimates = network_estimates(model, canvas)
    spec_mm = metadata.canvas.pixel_spacing_mm
    check_cancel(should_cancel)

    def to_ras(uv: NDArray[np.float64], depth: NDArray[np.float64]) -> NDArray[np.float64]:
        return canvas.image.uvd_to_ras(np.column_stack([uv, canvas.image.denormalize_depth(depth)]))

    points_ras = to_ras(estimates.uv, estimates.depth)
    ijk_to_ras = geometry.validate_ijk_to_ras(ijk_to_ras)
    # Whether the scan saw a landmark is judged at the network's point, before the volume's body moves it.
    inside = in_scanned_field(points_ras, canvas.image.pixel_to_ras[:3, 2], ijk_to_ras, np.shape(volume_kji),
                              EDGE_MARGIN_PX * spec_mm)
    views_ras = [to_ras(uv, depth) for uv, depth in zip(estimates.uv_views, estimates.depth_views, strict=True)]
    points_ras, disagreement, no_end = at_limb_tips(
        points_ras, views_ras, estimates.disagreement_mm, metadata.landmarks, metadata.limb_tips, volume_kji,
        ijk_to_ras, canvas.image.threshold)
    inside &= ~no_end  # a limb tip without a limb's end in the volume (limbtips.limb_tip) is not in the field
    disagreement = extremes_disagreement(views_ras, disagreement, metadata.landmarks, metadata.surface_extremes,
                                         volume_kji, ijk_to_ras, projection, canvas.image.threshold)
    probability = estimates.probability
    found = reported_found(inside, probability, disagreement, threshold, tolerance_mm)
    points_ras = at_depth_fractions(points_ras, metadata.landmarks, metadata.depth_fractions, volume_kji, ijk_to_ras,
                                    canvas.image.pixel_to_ras[:3, 2], canvas.image.threshold,
                                    projection.surface_min_mm)
    points_ras = at_surface_extremes(points_ras, metadata.landmarks, metadata.surface_extremes, volume_kji,
                                     ijk_to_ras, projection, canvas.image.threshold)
    points_ras = at_skin(points_ras, metadata.landmarks, metadata.onto_skin, volume_kji, ijk_to_ras,
                         canvas.image.threshold)
    margins_mm = metadata.edge_margins_mm()
    near_edge = found & (margins_mm > 0) & (inside_field_mm(points_ras, canvas.image.pixel_to_ras[:3, 2], ijk_to_ras,
                                                            np.shape(volume_kji)) < margins_mm)
    found &= ~near_edge
    points_ras[found] = into_volume(points_ras[found], ijk_to_ras, np.shape(volume_kji))
    report(progress, 1.0, "Done")
    return Landmarks(names=metadata.landmarks, points_ras=points_ras, confidence=probability,
                     found=found, canvas=canvas, disagreement_mm=disagreement,
                     confidence_threshold=threshold, mirror_tolerance_mm=tolerance_mm, near_edge=near_edge)


def detection_warning(landmarks: Landmarks, metadata: ModelMetadata, user_threshold: bool = False) -> str:
    """One line for people when a detection looks wrong as a whole; "" when it does not.

    Says when no landmark was found, when the volume seems another modality than the model's (a CT model given a
    volume without air near -1000 HU, or an MR model given a CT), or when the body spans far less than the model's
    anatomy (see SMALL_FIELD_FRACTION). The modality is told from the automatic threshold (CT when air is near
    -1000 HU), so not when the model or the caller (``user_threshold``) sets the threshold.
    """
    name, spec = metadata.name, metadata.canvas
    modality = _MODEL_MODALITY.get(str(metadata.training.get("config", {}).get("anatomy")))
    image = landmarks.canvas.image if landmarks.canvas is not None else None
    problems = []
    if image is not None and modality and metadata.projection.threshold is None and not user_threshold:
        looks_ct = image.threshold == CT_AIR_THRESHOLD_HU
        if looks_ct != (modality == "CT"):
            problems.append(f"the volume looks like {'CT' if looks_ct else 'MR (no air near -1000 HU)'} but model "
                            f"{name} is for {modality}")
    if image is not None and image.silhouette.any():
        rows, cols = np.flatnonzero(image.silhouette.any(axis=1)), np.flatnonzero(image.silhouette.any(axis=0))
        su, sv = image.pixel_spacing_mm
        size_mm = ((cols[-1] - cols[0] + 1) * su, (rows[-1] - rows[0] + 1) * sv)
        field_mm = (spec.width * spec.pixel_spacing_mm, spec.height * spec.pixel_spacing_mm)
        if max(size / field for size, field in zip(size_mm, field_mm, strict=True)) < SMALL_FIELD_FRACTION:
            problems.append(f"the body spans only {size_mm[0]:.0f} x {size_mm[1]:.0f} mm, far less than the "
                            f"{field_mm[0]:.0f} x {field_mm[1]:.0f} mm that model {name} covers")
    if not landmarks.found.any():
        problems.insert(0, "no landmark was found")
    if not problems:
        return ""
    return "; ".join(problems) + ". Check that the volume and the model go together."
