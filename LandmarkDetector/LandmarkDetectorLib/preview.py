"""A picture of detected landmarks over the volume's projection (PNG, drawn with matplotlib)."""

from __future__ import annotations

import os

import numpy as np

from .errors import InputError
from .fileio import atomic_path
from .images import depth_to_uint8
from .pipeline import Landmarks
from .projection import VIEW_AXES_RAS, ProjectedImage

LOW_CONFIDENCE = 0.8
"""Found landmarks below this confidence are drawn in orange."""


def draw_landmarks(image: ProjectedImage, landmarks: Landmarks, path: str | os.PathLike[str], *, title: str = "",
                   overwrite: bool = False) -> None:
    """Write a PNG of the depth projection (nearer = brighter) with each landmark at its projected position.

    Found landmarks are green circles (orange below LOW_CONFIDENCE), not-found ones red crosses at the network's
    guess; the axes are in mm and the patient's sides are marked.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("the preview needs matplotlib: pip install matplotlib") from None
    du, dv = image.pixel_spacing_mm
    height, width = image.shape
    extent = (-0.5 * du, (width - 0.5) * du, (height - 0.5) * dv, -0.5 * dv)
    uvd = image.ras_to_uvd(landmarks.points_ras)
    aspect = (height * dv) / max(width * du, 1.0)
    figure, axes = plt.subplots(figsize=(6.0, min(max(6.0 * aspect, 4.0), 12.0)), dpi=110)
    try:
        axes.imshow(depth_to_uint8(image), cmap="gray", extent=extent, interpolation="nearest", vmin=0, vmax=255)
        for name, (u, v, _), confidence, found in zip(landmarks.names, uvd, landmarks.confidence,
                                                       landmarks.in_view, strict=True):
            x, y = u * du, v * dv
            if found:
                colour = "limegreen" if confidence >= LOW_CONFIDENCE else "orange"
                axes.plot(x, y, "o", markersize=7, markerfacecolor="none", markeredgecolor=colour, markeredgewidth=2)
                label = f"{name} {confidence:.2f}"
            else:
                colour = "red"
                axes.plot(x, y, "x", markersize=7, color=colour, markeredgewidth=2)
                label = f"{name} (not found)"
            axes.annotate(label, (x, y), xytext=(6, 3), textcoords="offset points", color=colour, fontsize=7,
                          bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.5, "linewidth": 0})
        left, right = _side_labels(image.view)
        axes.text(0.01, 0.99, left, transform=axes.transAxes, va="top", ha="left", color="yellow", fontsize=9)
        axes.text(0.99, 0.99, right, transform=axes.transAxes, va="top", ha="right", color="yellow", fontsize=9)
        axes.set_xlabel("mm")
        axes.set_ylabel("mm")
        axes.set_title(title or f"{image.view.upper()} view", fontsize=9)
        figure.tight_layout()
        with atomic_path(path, overwrite=overwrite) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)


def _side_labels(view: str) -> tuple[str, str]:
    """Letters for the image's left and right edges (R/L in the AP view, A/P in the LR view)."""
    u_ras = VIEW_AXES_RAS[view][0]
    axis = int(np.argmax(np.abs(u_ras)))
    positive, negative = "RAS"[axis], "LPI"[axis]  # RAS: +x right, +y anterior, +z superior
    # The left edge (u = 0) lies towards -u_ras.
    return (negative, positive) if u_ras[axis] > 0 else (positive, negative)
