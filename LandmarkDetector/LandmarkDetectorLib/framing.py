"""Framing a projection into the fixed-size network input ("canvas") at a fixed physical pixel size.

The canvas keeps millimetres: it samples the projection at ``pixel_spacing_mm`` (nearest pixel, the same point
sampling the synthetic renderer does), centred on the silhouette's bounding box. Its result is again a
ProjectedImage, so the network's pixel outputs map to RAS with ``canvas.uvd_to_ras``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InputError
from .projection import ProjectedImage


@dataclass(frozen=True)
class CanvasSpec:
    """Network input geometry.

    Attributes:
        height: rows (v), pixels.
        width: columns (u), pixels.
        pixel_spacing_mm: size of a canvas pixel, mm (square).
    """

    height: int
    width: int
    pixel_spacing_mm: float

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise InputError(f"canvas must be at least 8 x 8 pixels, got {self.width} x {self.height}.")
        if not (np.isfinite(self.pixel_spacing_mm) and self.pixel_spacing_mm > 0):
            raise InputError(f"canvas pixel_spacing_mm must be positive, got {self.pixel_spacing_mm}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CanvasSpec:
        return cls(height=int(values["height"]), width=int(values["width"]),
                   pixel_spacing_mm=float(values["pixel_spacing_mm"]))


@dataclass(frozen=True)
class Canvas:
    """A projection sampled onto the network input grid.

    Attributes:
        image: the canvas as a ProjectedImage (silhouette, depth in mm, its own pixel_to_ras).
        in_field: (H, W) bool, True where the canvas pixel lies inside the projected volume's extent
            (False beyond the scanned field of view, where the body may continue unseen).
    """

    image: ProjectedImage
    in_field: NDArray[np.bool_]

    def network_input(self) -> NDArray[np.float32]:
        """(3, H, W) float32: silhouette (0/1), normalized depth (background 3), in-field mask (0/1)."""
        return np.stack([self.image.silhouette.astype(np.float32), self.image.normalized_depth(),
                         self.in_field.astype(np.float32)])


def canvas_origin_uv(image: ProjectedImage, spec: CanvasSpec) -> NDArray[np.float64]:
    """Source-image pixel (u, v) where canvas pixel (0, 0) falls: the canvas is centred on the silhouette's box."""
    su, sv = image.pixel_spacing_mm
    if image.silhouette.any():
        rows = np.flatnonzero(image.silhouette.any(axis=1))
        cols = np.flatnonzero(image.silhouette.any(axis=0))
        centre_uv = np.array([(cols[0] + cols[-1]) / 2, (rows[0] + rows[-1]) / 2])
    else:
        centre_uv = (np.array(image.shape[::-1], dtype=np.float64) - 1) / 2
    half_canvas_mm = (np.array([spec.width, spec.height], dtype=np.float64) - 1) / 2 * spec.pixel_spacing_mm
    return centre_uv - half_canvas_mm / np.array([su, sv])


def frame(image: ProjectedImage, spec: CanvasSpec, origin_uv: NDArray[np.float64] | None = None) -> Canvas:
    """Sample ``image`` onto the canvas ``spec`` (nearest pixel).

    Args:
        image: a projection (any pixel spacing).
        spec: canvas size and pixel spacing.
        origin_uv: source pixel of canvas pixel (0, 0); default centres the canvas on the silhouette.
    Returns:
        Canvas whose image has pixel_to_ras mapping canvas (u, v, d) to RAS mm.
    """
    su, sv = image.pixel_spacing_mm
    origin = canvas_origin_uv(image, spec) if origin_uv is None else np.asarray(origin_uv, dtype=np.float64)
    step = np.array([spec.pixel_spacing_mm / su, spec.pixel_spacing_mm / sv])
    cols = origin[0] + np.arange(spec.width) * step[0]
    rows = origin[1] + np.arange(spec.height) * step[1]
    col_index = np.rint(cols).astype(np.int64)
    row_index = np.rint(rows).astype(np.int64)
    col_ok = (col_index >= 0) & (col_index < image.shape[1])
    row_ok = (row_index >= 0) & (row_index < image.shape[0])
    in_field = row_ok[:, None] & col_ok[None, :]
    rr = np.clip(row_index, 0, image.shape[0] - 1)
    cc = np.clip(col_index, 0, image.shape[1] - 1)
    silhouette = image.silhouette[np.ix_(rr, cc)] & in_field
    depth = np.where(silhouette, image.depth_mm[np.ix_(rr, cc)], np.nan).astype(np.float32)
    canvas_to_source = np.array([[step[0], 0, 0, origin[0]], [0, step[1], 0, origin[1]], [0, 0, 1, 0], [0, 0, 0, 1]])
    pixel_to_ras = image.pixel_to_ras @ canvas_to_source
    canvas_image = ProjectedImage(silhouette=silhouette, depth_mm=depth, pixel_to_ras=pixel_to_ras,
                                  threshold=image.threshold, view=image.view)
    return Canvas(image=canvas_image, in_field=in_field)
