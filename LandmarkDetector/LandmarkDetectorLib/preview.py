"""A picture of detected landmarks over the volume's projection (PNG, drawn with matplotlib)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .fileio import atomic_path
from .images import depth_to_uint8, pyplot
from .pipeline import Landmarks
from .projection import VIEW_AXES_RAS, ProjectedImage


def draw_landmarks(image: ProjectedImage, landmarks: Landmarks, path: str | os.PathLike[str], *, title: str = "",
                   overwrite: bool = False) -> None:
    """Write a PNG of the depth projection (nearer = brighter) with each found landmark at its projected position.

    Found landmarks are green circles, orange below ``landmarks.low_confidence_below``; landmarks that were not found
    are listed beside the picture (their guesses may lie anywhere). The picture shows the volume's projection only,
    with the axes in mm and the patient's sides marked.
    """
    plt = pyplot("previews")
    figure = preview_figure(image, landmarks, title=title)
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)


def preview_figure(image: ProjectedImage, landmarks: Landmarks, *, title: str = "") -> Any:
    """The matplotlib figure that ``draw_landmarks`` saves (close it with ``pyplot().close``)."""
    plt = pyplot("previews")
    du, dv = image.pixel_spacing_mm
    height, width = image.shape
    extent = (-0.5 * du, (width - 0.5) * du, (height - 0.5) * dv, -0.5 * dv)
    uvd = image.ras_to_uvd(landmarks.points_ras)
    missing = [name for name, found in zip(landmarks.names, landmarks.found, strict=True) if not found]
    aspect = (height * dv) / max(width * du, 1.0)
    figure, axes = plt.subplots(figsize=(6.0 + 1.8 * bool(missing), min(max(6.0 * aspect, 4.0), 12.0)), dpi=110)
    axes.imshow(depth_to_uint8(image), cmap="gray", extent=extent, interpolation="nearest", vmin=0, vmax=255)
    for name, (u, v, _), confidence, found, low_below in zip(landmarks.names, uvd, landmarks.confidence,
                                                              landmarks.found, landmarks.low_confidence_below,
                                                              strict=True):
        if not found:
            continue
        x, y = u * du, v * dv
        colour = "limegreen" if confidence >= low_below else "orange"
        axes.plot(x, y, "o", markersize=7, markerfacecolor="none", markeredgecolor=colour, markeredgewidth=2)
        axes.annotate(f"{name} {confidence:.2f}", (x, y), xytext=(6, 3), textcoords="offset points",
                      color=colour, fontsize=7,
                      bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.5, "linewidth": 0})
    axes.set_xlim(extent[0], extent[1])  # the volume only: a landmark's guess never widens the picture
    axes.set_ylim(extent[2], extent[3])
    if missing:
        axes.text(1.03, 1.0, "not found:\n" + "\n".join(missing), transform=axes.transAxes, va="top", ha="left",
                  color="red", fontsize=8)
    left, right = _side_labels(image.view)
    axes.text(0.01, 0.99, left, transform=axes.transAxes, va="top", ha="left", color="yellow", fontsize=9)
    axes.text(0.99, 0.99, right, transform=axes.transAxes, va="top", ha="right", color="yellow", fontsize=9)
    axes.set_xlabel("mm")
    axes.set_ylabel("mm")
    axes.set_title(title or f"{image.view.upper()} view", fontsize=9)
    figure.tight_layout()
    return figure


def _side_labels(view: str) -> tuple[str, str]:
    """Letters for the image's left and right edges (R/L in the AP view, A/P in the LR view)."""
    u_ras = VIEW_AXES_RAS[view][0]
    axis = int(np.argmax(np.abs(u_ras)))
    positive, negative = "RAS"[axis], "LPI"[axis]  # RAS: +x right, +y anterior, +z superior
    # The left edge (u = 0) lies towards -u_ras.
    return (negative, positive) if u_ras[axis] > 0 else (positive, negative)
