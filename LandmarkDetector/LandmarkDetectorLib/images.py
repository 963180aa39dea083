"""8-bit pictures of projections for people to look at (PNG previews, montages)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .projection import ProjectedImage


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
