"""Accuracy of a model on held-out synthetic 3D volumes, through the whole projection path, with baselines.

Compared on the same cases:
- the model (its 2D position and its depth head),
- "mean depth": the model's 2D position with each landmark's mean normalized training depth (paper, Fig. 4),
- "NN(syn)": the mean annotation of the 3 nearest synthetic training canvases (paper's nearest-neighbour baseline).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..markups import read_markups
from ..model import LandmarkModel
from ..pipeline import Landmarks, detect_landmarks, inside_field_mm, reported_found
from ..progress import ProgressCallback, report
from ..symmetry import mirror_partners
from ..synthetic.dataset import synthesize_case
from ..thickness import body_runs_along_ray, fraction_in_run, nearest_run
from ..volume_io import read_volume
from .data import Batch, SyntheticSource

logger = logging.getLogger(__name__)

FOUND_WITHIN_MM = {"body": 30.0, "hand": 5.0}
"""A landmark reported found should lie within this distance of the truth (the project's aim: 95% of them)."""


@dataclass
class Reference:
    """Annotated canvases for the baselines (synthetic training samples, or annotated target cases).

    Attributes:
        silhouettes: (M, h*w) downsampled silhouettes, the nearest-neighbour search space.
        uv: (M, N, 2) landmark canvas pixels.
        depth: (M, N) normalized landmark depths.
        in_view: (M, N) landmark inside the scanned field.
        located: (M, N) landmark position known (synthetic: always; annotations: in view).
        mean_depth: (N,) mean normalized depth of each landmark in view (the paper's mean-depth baseline).
    """

    silhouettes: NDArray[np.float32]
    uv: NDArray[np.float32]
    depth: NDArray[np.float32]
    in_view: NDArray[np.bool_]
    located: NDArray[np.bool_]
    mean_depth: NDArray[np.float64]

    @classmethod
    def generate(cls, source: SyntheticSource, count: int, seed: int) -> Reference:
        batches = [source.batch(min(256, count - start), np.random.default_rng([seed, 3, start]))
                   for start in range(0, count, 256)]
        return cls.from_batch(Batch.stack(batches))

    @classmethod
    def from_batch(cls, data: Batch) -> Reference:
        in_view = data.in_view
        mean_depth = np.array([data.depth[in_view[:, n], n].mean() if in_view[:, n].any() else np.nan
                               for n in range(in_view.shape[1])])
        return cls(_nn_features(data.inputs), data.uv, data.depth, in_view, data.located, mean_depth)

    def nearest(self, inputs: NDArray[np.float32], k: int = 3) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Mean uv (N, 2) and normalized depth (N,) of each landmark over the k canvases nearest to one canvas
        that locate it (NaN where none does)."""
        distance = ((self.silhouettes - _nn_features(inputs[None])) ** 2).sum(axis=1)
        order = np.argsort(distance, kind="stable")
        uv = np.full((self.uv.shape[1], 2), np.nan)
        depth = np.full(self.uv.shape[1], np.nan)
        for n in range(self.uv.shape[1]):
            idx = order[self.located[order, n]][:k]
            if idx.size:
                uv[n], depth[n] = self.uv[idx, n].mean(axis=0), self.depth[idx, n].mean()
        return uv, depth


def _nn_features(inputs: NDArray[np.float32]) -> NDArray[np.float32]:
    """Silhouettes averaged over 2 x 2 blocks, flattened: the nearest-neighbour search space."""
    s = inputs[:, 0]
    b, h, w = s.shape
    return s.reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).reshape(b, -1)


def evaluate_synthetic_volumes(model: LandmarkModel, anatomy: str, seed: int, count: int,
                               reference: Reference | None = None, progress: ProgressCallback | None = None,
                               generator: str = "primitive") -> dict[str, Any]:
    """Detect landmarks in ``count`` synthetic volumes of ``seed`` (from ``generator``) and compare with the truth.

    Returns:
        Per method ("model", and with a reference also "mean_depth" and "nn_syn"): (count, N) 3D errors in mm
        (NaN where the truth is out of view), in-plane and depth components; found/in-view flags; the in-view
        probabilities, the mirror disagreements (mm) and whether each prediction lies inside the scanned field
        (found = inside, probability at least the model's threshold and the mirror check passed), so that other
        thresholds and tolerances can be assessed (``calibrate_threshold``, ``calibrate_mirror_tolerance``); and
        "thickness" (count, N, 4) for ``calibrate_depth_fractions`` (``thickness_sample``).
    """
    names = model.metadata.landmarks
    methods = ["model"] + (["mean_depth", "nn_syn"] if reference is not None else [])
    errors = {m: np.full((count, len(names), 3), np.nan) for m in methods}  # 3D, in-plane, depth
    inside = np.zeros((count, len(names)), dtype=bool)
    confidence = np.zeros((count, len(names)))
    disagreement = np.full((count, len(names)), np.nan)
    edge_mm = np.full((count, len(names)), np.nan)
    truth_in_view = np.zeros((count, len(names)), dtype=bool)
    thickness = np.full((count, len(names), 4), np.nan)
    lenient = _lenient(model)
    for index in range(count):
        scan = synthesize_case(anatomy, seed, index, generator=generator)
        order = [scan.landmark_names.index(n) for n in names]
        truth, in_view = scan.landmarks_ras[order], scan.in_view[order]
        result = detect_landmarks(scan.voxels_kji, scan.ijk_to_ras, lenient, confidence_threshold=0.0)
        canvas = result.canvas
        predictions = {"model": result.points_ras}
        if reference is not None:
            uvd = canvas.image.ras_to_uvd(result.points_ras)
            uvd[:, 2] = canvas.image.denormalize_depth(reference.mean_depth)
            predictions["mean_depth"] = canvas.image.uvd_to_ras(uvd)
            uv, depth = reference.nearest(canvas.network_input())
            nn_uvd = np.column_stack([uv, canvas.image.denormalize_depth(depth)])
            predictions["nn_syn"] = canvas.image.uvd_to_ras(nn_uvd)
        for method, points in predictions.items():
            parts = _error_parts(dataclasses.replace(result, points_ras=points), truth)
            errors[method][index] = np.where(in_view[:, None], parts, np.nan)
        inside[index], confidence[index], truth_in_view[index] = result.found, result.confidence, in_view
        disagreement[index] = result.disagreement_mm
        edge_mm[index] = _inside_field_mm(result, scan.ijk_to_ras, scan.voxels_kji.shape)
        thickness[index] = np.where(in_view[:, None], thickness_sample(
            scan.voxels_kji, scan.ijk_to_ras, result, truth, model.metadata.projection.surface_min_mm), np.nan)
        report(progress, (index + 1) / count, f"Evaluated {index + 1}/{count} volumes")
    return {"names": names, "errors": errors, "truth_in_view": truth_in_view, "inside": inside,
            "confidence": confidence, "disagreement_mm": disagreement, "edge_mm": edge_mm,
            "known": np.ones_like(truth_in_view), "thickness": thickness,
            "found": reported_found(inside, confidence, disagreement, *model.metadata.found_rules())}


def evaluate_annotated_volumes(model: LandmarkModel, pairs: list[tuple[Path, Path]],
                               progress: ProgressCallback | None = None) -> dict[str, Any]:
    """``evaluate_synthetic_volumes`` on annotated volumes (e.g. the real-anatomy phantoms): (volume, landmark file)
    pairs as ``finetune.find_cases`` gives them. A landmark missing from a file is unknown and counts nowhere; one
    whose position is undefined is out of view.

    Returns:
        The dict of ``evaluate_synthetic_volumes`` (method "model" only) plus "cases" and "known" (count, N).
    """
    names = model.metadata.landmarks
    count = len(pairs)
    errors = np.full((count, len(names), 3), np.nan)
    inside = np.zeros((count, len(names)), dtype=bool)
    truth_in_view = np.zeros((count, len(names)), dtype=bool)
    known = np.zeros((count, len(names)), dtype=bool)
    confidence = np.zeros((count, len(names)))
    disagreement = np.full((count, len(names)), np.nan)
    edge_mm = np.full((count, len(names)), np.nan)
    lenient = _lenient(model)
    for index, (volume_path, marks_path) in enumerate(pairs):
        volume = read_volume(volume_path)
        result = detect_landmarks(volume.voxels_kji, volume.ijk_to_ras, lenient, confidence_threshold=0.0)
        reference = read_markups(marks_path)
        truth = np.full((len(names), 3), np.nan)
        for n, name in enumerate(names):
            point = reference.get(name)
            known[index, n] = point is not None
            if point is not None and point.status == "defined":
                truth[n] = point.position_ras
        truth_in_view[index] = np.isfinite(truth).all(axis=1)
        errors[index] = _error_parts(result, truth)
        inside[index], confidence[index] = result.found, result.confidence
        disagreement[index] = result.disagreement_mm
        edge_mm[index] = _inside_field_mm(result, volume.ijk_to_ras, volume.voxels_kji.shape)
        report(progress, (index + 1) / count, f"Evaluated {index + 1}/{count} volumes")
    return {"names": names, "cases": [volume_path.name for volume_path, _ in pairs], "errors": {"model": errors},
            "truth_in_view": truth_in_view, "known": known, "inside": inside, "confidence": confidence,
            "disagreement_mm": disagreement, "edge_mm": edge_mm,
            "found": reported_found(inside, confidence, disagreement, *model.metadata.found_rules())}


def thickness_sample(volume_kji: NDArray, ijk_to_ras: NDArray[np.float64], result: Landmarks,
                     truth_ras: NDArray[np.float64], min_run_mm: float) -> NDArray[np.float64]:
    """(N, 4) per landmark, along its viewing ray: the truth's fraction of the body's thickness (``fraction_in_run``
    of the stretch through the truth); entry and exit of the stretch the prediction lies in or nearest to, and the
    truth's depth, mm from the prediction along the ray. NaN where the truth is unknown or a ray crosses no body."""
    image = result.canvas.image
    ray = image.pixel_to_ras[:3, 2] / np.linalg.norm(image.pixel_to_ras[:3, 2])
    out = np.full((len(truth_ras), 4), np.nan)
    for n, (truth, predicted) in enumerate(zip(truth_ras, result.points_ras, strict=True)):
        if not np.isfinite(truth).all():
            continue
        at_truth = body_runs_along_ray(volume_kji, ijk_to_ras, truth, ray, image.threshold, min_run_mm)
        run = nearest_run(body_runs_along_ray(volume_kji, ijk_to_ras, predicted, ray, image.threshold, min_run_mm))
        out[n] = [fraction_in_run(at_truth), *(run or (np.nan, np.nan)), (truth - predicted) @ ray]
    return out


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Evaluation results of one model on several sets of cases, as one (methods all sets share)."""
    methods = set.intersection(*(set(r["errors"]) for r in results))
    merged = {key: np.concatenate([r[key] for r in results])
              for key in ("truth_in_view", "known", "inside", "confidence", "disagreement_mm", "edge_mm", "found")}
    merged["errors"] = {m: np.concatenate([r["errors"][m] for r in results]) for m in sorted(methods)}
    merged["names"] = results[0]["names"]
    return merged


def _lenient(model: LandmarkModel) -> LandmarkModel:
    """The model with detection's found flags saying only "inside the field": a mirror check that passes all."""
    tolerance = model.metadata.mirror_tolerance_mm
    return dataclasses.replace(model, metadata=dataclasses.replace(
        model.metadata, mirror_tolerance_mm=None if tolerance is None else np.inf))


def _inside_field_mm(result: Landmarks, ijk_to_ras: NDArray[np.float64], shape_kji: tuple[int, ...]
                     ) -> NDArray[np.float64]:
    """(N,) how far inside the scanned field's edges detection placed each landmark, mm (``inside_field_mm``)."""
    return inside_field_mm(result.points_ras, result.canvas.image.pixel_to_ras[:3, 2], ijk_to_ras, shape_kji)


def _error_parts(result: Landmarks, truth_ras: NDArray[np.float64]) -> NDArray[np.float64]:
    """(N, 3) 3D error, in-plane part and depth part (along the viewing ray), mm; NaN where the truth is unknown."""
    ray = result.canvas.image.pixel_to_ras[:3, 2] / np.linalg.norm(result.canvas.image.pixel_to_ras[:3, 2])
    delta = result.points_ras - truth_ras
    along = delta @ ray
    planar = np.linalg.norm(delta - along[:, None] * ray, axis=1)
    return np.column_stack([np.linalg.norm(delta, axis=1), planar, np.abs(along)])


def calibrate_threshold(result: dict[str, Any], out_of_view_not_found: float = 0.97) -> tuple[float, dict[str, float]]:
    """The lowest in-view probability threshold (0.05 steps) that reports at least ``out_of_view_not_found`` of the
    out-of-view landmarks of an ``evaluate_synthetic_volumes`` result as not found; 0.5 when none is out of view.

    Returns:
        The threshold and, at it, the share of out-of-view landmarks reported not found and of in-view landmarks
        reported found.
    """
    truth, inside, confidence = result["truth_in_view"], result["inside"], result["confidence"]

    def rates(threshold: float) -> dict[str, float]:
        found = inside & (confidence >= threshold)
        return {"out_of_view_reported_not_found": float((~found[~truth]).mean()) if (~truth).any() else 1.0,
                "in_view_reported_found": float(found[truth].mean()) if truth.any() else 1.0}

    if not (~truth).any():
        return 0.5, rates(0.5)
    for threshold in np.round(np.arange(0.05, 0.951, 0.05), 2):
        if rates(threshold)["out_of_view_reported_not_found"] >= out_of_view_not_found:
            return float(threshold), rates(threshold)
    return 0.95, rates(0.95)


def calibrate_mirror_tolerance(result: dict[str, Any], threshold: float, within_mm: float = 30.0,
                               share: float = 0.97) -> tuple[float | None, dict[str, float]]:
    """The largest mirror tolerance (2.5 mm steps, 5-100 mm) at which at least ``share`` of the landmarks reported
    found lie within ``within_mm`` of the truth (a found landmark that is out of view counts as wrong); where none
    reaches it, the largest with the highest share.

    Args:
        result: ``evaluate_synthetic_volumes`` output (of a model with a mirror check).
        threshold: the confidence threshold in force.
    Returns:
        The tolerance (None if the model has no mirror check), and at it: the share of found landmarks within
        ``within_mm``, and of in-view landmarks reported found.
    """
    disagreement = result["disagreement_mm"]
    error = result["errors"]["model"][..., 0]
    truth, inside, confidence = result["truth_in_view"], result["inside"], result["confidence"]

    def rates(tolerance: float | None) -> dict[str, float]:
        found = reported_found(inside, confidence, disagreement, threshold, tolerance)
        right = found & truth & (np.nan_to_num(error, nan=np.inf) <= within_mm)
        return {"found_within_mm": float(right.sum() / max(found.sum(), 1)),
                "in_view_reported_found": float(found[truth].mean()) if truth.any() else 1.0}

    if np.isnan(disagreement).all():
        return None, rates(None)
    candidates = np.arange(100.0, 4.99, -2.5)
    shares = [rates(tolerance)["found_within_mm"] for tolerance in candidates]
    reaching = [tolerance for tolerance, right in zip(candidates, shares, strict=True) if right >= share]
    tolerance = float(reaching[0] if reaching else candidates[int(np.argmax(shares))])
    return tolerance, rates(tolerance)


MIN_OUT_OF_VIEW = 20
"""Out-of-view calibration landmarks (a landmark and its left-right partner together) needed to give them a
threshold and an edge margin of their own; fewer keep the model-wide threshold and no margin."""
EDGE_MARGINS_MM = (0.0, 5.0, 10.0, 15.0, 20.0)
"""The edge margins (``ModelMetadata.landmark_edge_margins_mm``) that ``calibrate_per_landmark`` tries."""


def calibrate_per_landmark(calibration: dict[str, Any], checked: dict[str, Any], threshold: float,
                           within_mm: float = 30.0
                           ) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, Any]]:
    """Each landmark's own threshold, edge margin and mirror tolerance, on its cases alone pooled with its left-right
    partner's (one rule for both sides, twice the cases). For each margin of EDGE_MARGINS_MM (found only when placed
    at least that far inside the field's edges) the threshold is calibrated as the model-wide one
    (``calibrate_threshold`` on ``calibration``); the margin that then reports the most in-view landmarks found is
    kept (the smallest of equals), and the mirror tolerance is calibrated at it (``calibrate_mirror_tolerance`` on
    ``checked``). Where no tolerance reaches the share, the one that comes closest.

    Args:
        calibration: ``evaluate_synthetic_volumes`` results of all the calibration volumes (merged).
        checked: those whose landmark definitions the model is taught (for the body: the anny volumes).
        threshold: the model-wide threshold, kept (with no margin) by landmarks with fewer than MIN_OUT_OF_VIEW
            out-of-view cases.
    Returns:
        Landmark name -> threshold; name -> edge margin, mm (only those above 0); name -> tolerance (empty without
        a mirror check); name -> the rates at them.
    """
    names = calibration["names"]
    partners = mirror_partners(names)
    thresholds: dict[str, float] = {}
    margins: dict[str, float] = {}
    tolerances: dict[str, float] = {}
    rates: dict[str, Any] = {}
    for n in range(len(names)):
        if names[n] in thresholds:  # calibrated with its partner
            continue
        group = sorted({n, n if partners is None else int(partners[n])})
        out_of_view = int((~_columns(calibration, group)["truth_in_view"]).sum())
        if out_of_view < MIN_OUT_OF_VIEW:
            own, margin = threshold, 0.0
            threshold_rates = calibrate_threshold(_columns(calibration, group))[1]
        else:
            tried = {margin: calibrate_threshold(_columns(_within_edges(calibration, margin), group))
                     for margin in EDGE_MARGINS_MM}
            margin = max(EDGE_MARGINS_MM, key=lambda m: (tried[m][1]["in_view_reported_found"], -m))
            own, threshold_rates = tried[margin]
        tolerance, tolerance_rates = calibrate_mirror_tolerance(_columns(_within_edges(checked, margin), group), own,
                                                                within_mm)
        for name in (names[c] for c in group):
            thresholds[name] = own
            if margin > 0:
                margins[name] = margin
            if tolerance is not None:
                tolerances[name] = tolerance
            rates[name] = {"out_of_view": out_of_view, "edge_margin_mm": margin, **threshold_rates,
                           **{f"at_tolerance_{k}": v for k, v in tolerance_rates.items()}}
    return thresholds, margins, tolerances, rates


def _within_edges(result: dict[str, Any], margin_mm: float) -> dict[str, Any]:
    """An evaluation result in which only the landmarks placed at least ``margin_mm`` inside the field's edges count
    as inside the field."""
    if margin_mm <= 0:
        return result
    return {**result, "inside": result["inside"] & (np.nan_to_num(result["edge_mm"], nan=-np.inf) >= margin_mm)}


def _columns(result: dict[str, Any], columns: list[int]) -> dict[str, Any]:
    """An evaluation result restricted to some landmarks (columns)."""
    sliced = {key: result[key][:, columns]
              for key in ("truth_in_view", "inside", "confidence", "disagreement_mm", "edge_mm")}
    sliced["errors"] = {method: errors[:, columns] for method, errors in result["errors"].items()}
    sliced["names"] = tuple(result["names"][c] for c in columns)
    return sliced


def calibrate_depth_fractions(result: dict[str, Any], landmarks: tuple[str, ...]
                              ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The fraction of the body's thickness along the ray at which to place each of ``landmarks``: the median of
    their truths' fractions (``thickness_sample``) over an ``evaluate_synthetic_volumes`` result of a model without
    depth fractions.

    Returns:
        Landmark name -> fraction (those with no in-view case whose ray crosses the body left out); and per landmark:
        the fraction, the number of cases, and the mean depth error (mm) of the network and of the fraction at the
        model's predicted positions.
    """
    fractions: dict[str, float] = {}
    rates: dict[str, dict[str, float]] = {}
    for name in landmarks:
        truth_fraction, entry, exit_, truth_mm = np.moveaxis(result["thickness"][:, result["names"].index(name)], -1, 0)
        usable = np.isfinite(truth_fraction) & np.isfinite(entry) & np.isfinite(truth_mm)
        if not usable.any():
            continue
        fractions[name] = round(float(np.clip(np.median(truth_fraction[usable]), 0.0, 1.0)), 3)
        rule = entry + fractions[name] * (exit_ - entry) - truth_mm
        rates[name] = {"fraction": fractions[name], "cases": int(usable.sum()),
                       "network_depth_mm": float(np.abs(truth_mm[usable]).mean()),
                       "fraction_depth_mm": float(np.abs(rule[usable]).mean())}
    return fractions, rates


def summary(result: dict[str, Any], within_mm: float = FOUND_WITHIN_MM["body"]) -> dict[str, Any]:
    """Per method and landmark: mean, median, 95th percentile and maximum 3D error (mm); detection rates, with the
    share of found landmarks within ``within_mm`` of the truth."""
    names, found, truth = result["names"], result["found"], result["truth_in_view"]
    known = result.get("known", np.ones_like(truth))
    found = found & known
    out: dict[str, Any] = {}
    for method, errors in result["errors"].items():
        table = {}
        for n, name in enumerate(names + ("all",)):
            e = errors[:, n] if name != "all" else errors.reshape(-1, 3)
            e = e[np.isfinite(e[:, 0])]
            if not e.size:
                table[name] = {"n": 0}
                continue
            table[name] = {"n": int(len(e)), "mean_mm": float(e[:, 0].mean()), "median_mm": float(np.median(e[:, 0])),
                           "p95_mm": float(np.percentile(e[:, 0], 95)), "max_mm": float(e[:, 0].max()),
                           "mean_planar_mm": float(e[:, 1].mean()), "mean_depth_mm": float(e[:, 2].mean())}
        out[method] = table
    outside = known & ~truth
    error = np.nan_to_num(result["errors"]["model"][..., 0], nan=np.inf)
    right = found & truth & (error <= within_mm)
    out["detection"] = {
        "out_of_view": int(outside.sum()),
        "out_of_view_reported_not_found": float((~found[outside]).mean()) if outside.any() else None,
        "in_view": int(truth.sum()),
        "in_view_reported_not_found": float((~found[truth]).mean()) if truth.any() else None,
        "found": int(found.sum()),
        "within_mm": within_mm,
        "found_within": float(right.sum() / found.sum()) if found.any() else None,
    }
    return out


def markdown_table(summaries: dict[str, dict[str, Any]], names: tuple[str, ...]) -> str:
    """Rows: landmarks; columns: mean / median / p95 / max 3D error of each method (mm)."""
    methods = list(summaries)
    header = "| landmark | " + " | ".join(f"{m} mean / median / p95 / max" for m in methods) + " |"
    lines = [header, "|---|" + "---|" * len(methods)]
    for name in names + ("all",):
        cells = []
        for method in methods:
            row = summaries[method].get(name, {})
            cells.append("-" if not row.get("n") else
                         f"{row['mean_mm']:.1f} / {row['median_mm']:.1f} / {row['p95_mm']:.1f} / {row['max_mm']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
