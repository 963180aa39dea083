"""Left-right symmetry of landmark sets and canvases: the mirror check that decides whether a point is trusted.

A whole body seen in a coronal projection has a mirror image that is also a plausible body, with its right and left
landmarks swapped. Running the network on a canvas and on its mirror gives two independent-looking estimates of
each landmark; where they disagree the network is guessing (hands over the groin, knees hidden in a blanket), and a
point is reported as found only when they agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

SIDES = ("R", "L")
"""Suffixes of paired landmark names (the patient's right and left), e.g. ``KneeR`` / ``KneeL``."""


def mirror_partners(names: Sequence[str]) -> NDArray[np.intp] | None:
    """Index of each landmark's left-right counterpart (its own index for a midline landmark).

    Returns:
        (N,) indices, or None when no name has a counterpart (e.g. the five fingertips of one hand, whose mirror is
        a hand of the other side).
    """
    index = {name: n for n, name in enumerate(names)}
    partners = np.arange(len(names))
    for n, name in enumerate(names):
        if name[-1:] in SIDES:
            other = name[:-1] + SIDES[1 - SIDES.index(name[-1])]
            if other in index:
                partners[n] = index[other]
    return None if np.array_equal(partners, np.arange(len(names))) else partners


def unmirror(uv_px: NDArray[np.float64], values: Sequence[NDArray[np.float64]], partners: NDArray[np.intp],
             width_px: int) -> tuple[NDArray[np.float64], list[NDArray[np.float64]]]:
    """Predictions made on a canvas flipped left-right, brought back to the original canvas.

    Args:
        uv_px: (..., N, 2) canvas pixels (u, v) predicted on the flipped canvas (pixel centres at integers).
        values: per-landmark arrays (..., N) (normalized depth, probability) predicted on the flipped canvas.
        partners: ``mirror_partners`` of the landmark names.
        width_px: canvas width W; column u of the flipped canvas is column W - 1 - u of the original.
    Returns:
        uv_px and values in the original canvas and landmark order.
    """
    uv = uv_px[..., partners, :].copy()
    uv[..., 0] = (width_px - 1) - uv[..., 0]
    return uv, [v[..., partners] for v in values]
