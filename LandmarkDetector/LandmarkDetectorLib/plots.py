"""Figures of an evaluation (matplotlib): error per landmark, error CDF, worst cases over their projections."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .evaluation import Comparison
from .fileio import atomic_path
from .images import depth_to_uint8, pyplot
from .projection import ProjectedImage


def _save(figure: Any, path: str | os.PathLike[str], overwrite: bool) -> None:
    plt = pyplot("plots")
    try:
        figure.tight_layout()
        with atomic_path(path, overwrite=overwrite) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(figure)


def error_bars(stats: dict[str, dict[str, dict[str, Any]]], path: str | os.PathLike[str], *,
               overwrite: bool = False) -> None:
    """Mean and standard deviation of the 3D error per landmark, one colour per method (the paper's Fig. 2)."""
    plt = pyplot("plots")
    methods = list(stats)
    labels = [k for k in dict.fromkeys(k for m in methods for k in stats[m]) if k != "all"]
    width = 0.8 / len(methods)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.0))
    x = np.arange(len(labels))
    for index, method in enumerate(methods):
        means = [stats[method].get(k, {}).get("mean_mm", np.nan) for k in labels]
        stds = [stats[method].get(k, {}).get("std_mm", np.nan) for k in labels]
        axes.bar(x + (index - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=method)
    axes.set_xticks(x, labels, rotation=30, ha="right")
    axes.set_ylabel("3D error (mm), mean and standard deviation")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    _save(figure, path, overwrite)


def error_cdf(comparisons: list[Comparison], path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Cumulative share of landmarks (in view and found) within each 3D error, one curve per method."""
    plt = pyplot("plots")
    figure, axes = plt.subplots(figsize=(6.0, 4.0))
    for method in dict.fromkeys(c.method for c in comparisons):
        errors = np.sort([c.error_mm for c in comparisons if c.method == method and np.isfinite(c.error_mm)])
        if errors.size:
            axes.step(errors, np.arange(1, errors.size + 1) / errors.size, where="post", label=method)
    axes.set_xlabel("3D error (mm)")
    axes.set_ylabel("share of landmarks")
    axes.set_ylim(0, 1.01)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save(figure, path, overwrite)


def worst_cases(cases: list[tuple[str, float]], images: dict[str, ProjectedImage], predicted: dict[str, Any],
                truth: dict[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Cases drawn over their projections: reference points as cyan crosses, predictions as red circles, joined.

    Args:
        cases: (case, mean error in mm) to draw, in order.
        images: case -> projection; predicted, truth: case -> PointList.
    """
    plt = pyplot("plots")
    columns = min(3, len(cases))
    rows = (len(cases) + columns - 1) // columns
    figure, axes_grid = plt.subplots(rows, columns, figsize=(4.0 * columns, 6.0 * rows), squeeze=False)
    for axes in axes_grid.ravel()[len(cases):]:
        axes.axis("off")
    for axes, (case, mean_mm) in zip(axes_grid.ravel(), cases, strict=False):
        image = images[case]
        du, dv = image.pixel_spacing_mm
        h, w = image.shape
        axes.imshow(depth_to_uint8(image), cmap="gray", interpolation="nearest",
                    extent=(-0.5 * du, (w - 0.5) * du, (h - 0.5) * dv, -0.5 * dv))
        for point in truth[case].points:
            if point.status != "defined":
                continue
            t = image.ras_to_uvd(np.array([point.position_ras]))[0]
            axes.plot(t[0] * du, t[1] * dv, "+", color="cyan", markersize=8, markeredgewidth=2)
            guess = predicted[case].get(point.label)
            if guess is not None and guess.status == "defined":
                g = image.ras_to_uvd(np.array([guess.position_ras]))[0]
                axes.plot([t[0] * du, g[0] * du], [t[1] * dv, g[1] * dv], "-", color="yellow", linewidth=1)
                axes.plot(g[0] * du, g[1] * dv, "o", markerfacecolor="none", markeredgecolor="red", markersize=6)
        axes.set_title(f"{case}: mean {mean_mm:.1f} mm", fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])
    axes_grid[0, 0].legend(handles=worst_cases_legend(plt), loc="lower right", fontsize=7, framealpha=0.7)
    _save(figure, path, overwrite)


def worst_cases_legend(plt: Any) -> list[Any]:
    """Legend entries of ``worst_cases``: what its markers and lines mean."""
    return [plt.Line2D([], [], marker="+", color="cyan", linestyle="none", markersize=8, markeredgewidth=2,
                       label="reference (in view)"),
            plt.Line2D([], [], marker="o", color="red", markerfacecolor="none", linestyle="none", markersize=6,
                       label="prediction (found)"),
            plt.Line2D([], [], color="yellow", linewidth=1, label="error")]
