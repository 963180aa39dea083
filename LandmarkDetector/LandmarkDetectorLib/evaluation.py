"""Accuracy of predicted landmarks against reference landmarks: pairing, errors, statistics, report files.

Cases pair by file name (``case.mrk.json`` with ``case.fcsv``, any supported format on either side) and landmarks
by label. A reference point that is not defined (position status undefined) marks a landmark outside the scanned
field of view; a predicted point that is not defined is a landmark reported as not found. The 3D error is split
into the in-plane part (right-left and superior-inferior, the image plane of the AP view the detector sees) and
the depth part (anterior-posterior, along its rays).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InputError
from .fileio import atomic_open
from .markups import PointList, read_markups

logger = logging.getLogger(__name__)

LANDMARK_SUFFIXES = (".mrk.json", ".fcsv", ".csv")
WITHIN_MM = (5.0, 10.0, 20.0)
DEPTH_AXIS_RAS = 1  # anterior-posterior: the rays of the AP view


@dataclass(frozen=True)
class Comparison:
    """One landmark of one case for one method.

    Attributes:
        method: name of the prediction folder.
        case: case name (file name without its landmark ending).
        landmark: label.
        truth_in_view: the reference point is defined.
        found: the predicted point is defined.
        error_mm, in_plane_mm, depth_mm: 3D error and its parts; NaN unless both points are defined.
        offset_ras_mm: predicted minus reference point (R, A, S) in mm, the signed error; NaN unless both are defined.
    """

    method: str
    case: str
    landmark: str
    truth_in_view: bool
    found: bool
    error_mm: float
    in_plane_mm: float
    depth_mm: float
    offset_ras_mm: tuple[float, float, float] = (float("nan"),) * 3


def landmark_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Case name -> landmark file for the ``.mrk.json``, ``.fcsv`` and ``.csv`` files of a folder.

    Raises:
        InputError: not a folder, or two files for one case (e.g. case.fcsv and case.mrk.json).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder of landmark files (.mrk.json, .fcsv, .csv).")
    files: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        suffix = next((s for s in LANDMARK_SUFFIXES if path.name.lower().endswith(s)), None)
        if suffix is None or not path.is_file() or path.name.startswith(".") or path.name == "summary.csv":
            continue
        case = path.name[: -len(suffix)]
        if case in files:
            raise InputError(f"{files[case].name} and {path.name} in {root} are both case {case!r}; keep one.")
        files[case] = path
    return files


def compare_cases(predictions: dict[str, str | os.PathLike[str]], truth_dir: str | os.PathLike[str]
                  ) -> tuple[list[Comparison], list[str]]:
    """Compare each prediction folder (method name -> folder) with the reference folder.

    Returns:
        The comparisons of every reference landmark of every paired case, and warnings (cases or labels present on
        one side only), which are also logged.
    """
    truth_files = landmark_files(truth_dir)
    if not truth_files:
        raise InputError(f"no landmark files (.mrk.json, .fcsv, .csv) in {truth_dir}.")
    comparisons: list[Comparison] = []
    warnings: list[str] = []
    for method, folder in predictions.items():
        predicted = landmark_files(folder)
        for case in sorted(set(predicted) - set(truth_files)):
            warnings.append(f"{method}: {predicted[case].name} has no reference in {truth_dir}; not evaluated.")
        missing = sorted(set(truth_files) - set(predicted))
        if missing:
            warnings.append(f"{method}: no prediction for {len(missing)} reference cases ({', '.join(missing[:5])}"
                            f"{', ...' if len(missing) > 5 else ''}); not evaluated.")
        for case in sorted(set(truth_files) & set(predicted)):
            comparisons += _compare(method, case, read_markups(predicted[case]), read_markups(truth_files[case]),
                                    warnings)
    for warning in warnings:
        logger.warning("%s", warning)
    if not comparisons:
        raise InputError(f"no case names in common between the predictions and {truth_dir}; name each landmark "
                         "file after its case on both sides (case.mrk.json).")
    return comparisons, warnings


def _compare(method: str, case: str, predicted: PointList, truth: PointList, warnings: list[str]) -> list[Comparison]:
    labels = truth.labels
    for label in sorted(set(predicted.labels) - set(labels)):
        warnings.append(f"{method}/{case}: predicted landmark {label!r} is not in the reference; ignored.")
    rows = []
    for label in labels:
        reference = truth.get(label)
        guess = predicted.get(label)
        if guess is None:
            warnings.append(f"{method}/{case}: no predicted landmark {label!r}; counted as not found.")
        truth_in_view = reference.status == "defined"
        found = guess is not None and guess.status == "defined"
        error = in_plane = depth = float("nan")
        offset: tuple[float, float, float] = (float("nan"),) * 3
        if truth_in_view and found:
            delta = np.subtract(guess.position_ras, reference.position_ras)
            error = float(np.linalg.norm(delta))
            depth = float(abs(delta[DEPTH_AXIS_RAS]))
            in_plane = float(np.hypot(delta[0], delta[2]))
            offset = (float(delta[0]), float(delta[1]), float(delta[2]))
        rows.append(Comparison(method, case, label, truth_in_view, found, error, in_plane, depth, offset))
    return rows


def statistics(comparisons: list[Comparison]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method, per landmark and over all landmarks ("all"): error statistics in mm and detection counts.

    Each entry: n (landmarks in view in the reference and found), mean, std, median, p95, max of the 3D error,
    mean in-plane and depth errors, share within 5/10/20 mm, not_found (in view in the reference, reported not
    found), wrongly_found (outside the reference's view, reported found), in_view and out_of_view counts.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method in dict.fromkeys(c.method for c in comparisons):
        rows = [c for c in comparisons if c.method == method]
        labels = list(dict.fromkeys(c.landmark for c in rows))
        out[method] = {label: _stats([c for c in rows if c.landmark == label]) for label in labels}
        out[method]["all"] = _stats(rows)
    return out


def _stats(rows: list[Comparison]) -> dict[str, Any]:
    errors = np.array([c.error_mm for c in rows if np.isfinite(c.error_mm)])
    entry: dict[str, Any] = {
        "n": int(errors.size),
        "in_view": sum(c.truth_in_view for c in rows),
        "out_of_view": sum(not c.truth_in_view for c in rows),
        "not_found": sum(c.truth_in_view and not c.found for c in rows),
        "wrongly_found": sum(c.found and not c.truth_in_view for c in rows),
    }
    if errors.size:
        in_plane = np.array([c.in_plane_mm for c in rows if np.isfinite(c.error_mm)])
        depth = np.array([c.depth_mm for c in rows if np.isfinite(c.error_mm)])
        entry.update({
            "mean_mm": float(errors.mean()), "std_mm": float(errors.std(ddof=1)) if errors.size > 1 else 0.0,
            "median_mm": float(np.median(errors)), "p95_mm": float(np.percentile(errors, 95)),
            "max_mm": float(errors.max()), "mean_in_plane_mm": float(in_plane.mean()),
            "mean_depth_mm": float(depth.mean()),
            **{f"within_{int(t)}mm": float((errors <= t).mean()) for t in WITHIN_MM},
        })
    return entry


def markdown_report(stats: dict[str, dict[str, dict[str, Any]]], warnings: list[str]) -> str:
    """The statistics as Markdown tables, one per method."""
    lines = ["# Landmark accuracy", ""]
    header = ("| landmark | n | mean | std | median | p95 | max | in-plane | depth | <=5 mm | <=10 mm | <=20 mm "
              "| not found | wrongly found |")
    for method, table in stats.items():
        lines += [f"## {method}", "", "3D error in mm (in-plane: right-left and superior-inferior; depth: "
                  "anterior-posterior).", "", header, "|---" * 14 + "|"]
        for label, e in table.items():
            name = f"**{label}**" if label == "all" else label
            if e["n"]:
                numbers = " | ".join(f"{e[k]:.1f}" for k in ("mean_mm", "std_mm", "median_mm", "p95_mm", "max_mm",
                                                             "mean_in_plane_mm", "mean_depth_mm"))
                shares = " | ".join(f"{e[f'within_{int(t)}mm']:.0%}" for t in WITHIN_MM)
            else:
                numbers, shares = " | ".join(["-"] * 7), " | ".join(["-"] * 3)
            lines.append(f"| {name} | {e['n']} | {numbers} | {shares} | {e['not_found']}/{e['in_view']} | "
                         f"{e['wrongly_found']}/{e['out_of_view']} |")
        lines.append("")
    if warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in warnings), ""]
    return "\n".join(lines)


def error_matrix(comparisons: list[Comparison], method: str) -> tuple[list[str], list[str], NDArray[np.float64]]:
    """(cases, landmarks, errors[case, landmark]) of one method; NaN where no error was measured."""
    rows = [c for c in comparisons if c.method == method]
    cases = list(dict.fromkeys(c.case for c in rows))
    labels = list(dict.fromkeys(c.landmark for c in rows))
    errors = np.full((len(cases), len(labels)), np.nan)
    for c in rows:
        errors[cases.index(c.case), labels.index(c.landmark)] = c.error_mm
    return cases, labels, errors


def ranked_cases(comparisons: list[Comparison], method: str) -> list[tuple[str, float]]:
    """(case, mean 3D error) of one method, worst first; cases without any error measured come last (NaN)."""
    cases, _, errors = error_matrix(comparisons, method)
    measured = np.isfinite(errors)
    means = [float(errors[i][measured[i]].mean()) if measured[i].any() else float("nan") for i in range(len(cases))]
    return sorted(zip(cases, means, strict=True), key=lambda item: -item[1] if np.isfinite(item[1]) else np.inf)


def write_report(out_dir: str | os.PathLike[str], comparisons: list[Comparison], warnings: list[str], *,
                 overwrite: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Write report.json (statistics, every comparison, warnings) and report.md into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = statistics(comparisons)
    document = {"statistics": stats, "warnings": warnings,
                "comparisons": [{**c.__dict__, **{k: (None if not np.isfinite(getattr(c, k)) else getattr(c, k))
                                                  for k in ("error_mm", "in_plane_mm", "depth_mm")}}
                                for c in comparisons]}
    with atomic_open(out / "report.json", "w", overwrite=overwrite) as f:
        json.dump(document, f, indent=1)
    with atomic_open(out / "report.md", "w", overwrite=overwrite) as f:
        f.write(markdown_report(stats, warnings))
    return stats
