"""8-bit pictures of projections for people to look at (PNG previews, montages), and matplotlib, which draws them."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InputError
from .projection import ProjectedImage

MATPLOTLIB_INSTALL = ("pip install matplotlib (in Slicer, from its Python console: "
                      "slicer.util.pip_install(\"matplotlib\"))")


def pyplot(what: str = "pictures") -> Any:
    """matplotlib.pyplot with the file-only Agg backend.

    Raises:
        InputError: matplotlib is not installed (Slicer's Python lacks it); the message says how to install it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(f"{what} need matplotlib, which is not installed: {MATPLOTLIB_INSTALL}.") from None
    return plt


def silhouette_to_uint8(silhouette: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """Body 255, background 0."""
    return np.where(silhouette, 255, 0).astype(np.uint8)


def depth_to_uint8(image: ProjectedImage) -> NDArray[np.uint8]:
    """Body surface depth as grey levels: 255 nearest, 1 farthest (linear in mm), background 0."""
    out = np.zeros(image.shape, dtype=np.uint8)
    body = image.silhouette
    if not body.any():
        return out
    depth = image.depth_mm[body].astype(np.float64)
    near, far = depth.min(), depth.max()
    scale = 254.0 / (far - near) if far > near else 0.0
    out[body] = np.rint(255.0 - (depth - near) * scale).astype(np.uint8)
    return out
