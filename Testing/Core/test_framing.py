"""Framing a projection into the network's canvas: centred on the body's bounding box, at the canvas pixel size,
whatever the source pixels (here 2 x 3 mm, not square), with the field of view outside the source marked."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkDetectorLib.errors import InputError
from LandmarkDetectorLib.framing import CanvasSpec, canvas_origin_uv, frame
from LandmarkDetectorLib.projection import ProjectedImage, view_pixel_to_ras


def test_the_canvas_is_centred_on_the_body_at_its_own_pixel_size():
    silhouette = np.zeros((20, 30), dtype=bool)
    silhouette[4:10, 6:16] = True  # rows 4-9, columns 6-15: centre (u, v) = (10.5, 6.5)
    depth = np.where(silhouette, 20.0, np.nan).astype(np.float32)
    image = ProjectedImage(silhouette=silhouette, depth_mm=depth,
                           pixel_to_ras=view_pixel_to_ras("ap", (5.0, 6.0, 7.0), (2.0, 3.0)), threshold=0.5, view="ap")
    spec = CanvasSpec(height=8, width=16, pixel_spacing_mm=4.0)
    origin = canvas_origin_uv(image, spec)
    # Half the canvas (7.5 x 3.5 pixels of 4 mm = 30 x 14 mm) before the centre, in source pixels of 2 x 3 mm.
    np.testing.assert_allclose(origin, [10.5 - 30.0 / 2.0, 6.5 - 14.0 / 3.0])
    canvas = frame(image, spec)
    np.testing.assert_allclose(canvas.image.pixel_spacing_mm, (4.0, 4.0))
    uvd = np.array([[3.0, 2.0, 5.0], [15.0, 7.0, 1.0]])
    source_uvd = np.column_stack([origin[0] + 2.0 * uvd[:, 0], origin[1] + 4.0 / 3.0 * uvd[:, 1], uvd[:, 2]])
    np.testing.assert_allclose(canvas.image.uvd_to_ras(uvd), image.uvd_to_ras(source_uvd))
    cols = np.rint(origin[0] + 2.0 * np.arange(16))
    rows = np.rint(origin[1] + 4.0 / 3.0 * np.arange(8))
    np.testing.assert_array_equal(canvas.in_field, ((rows >= 0) & (rows < 20))[:, None] & ((cols >= 0) & (cols < 30)))
    assert not canvas.in_field.all()  # the canvas reaches past the source on the left
    expected = silhouette[np.ix_(np.clip(rows, 0, 19).astype(int), np.clip(cols, 0, 29).astype(int))] & canvas.in_field
    np.testing.assert_array_equal(canvas.image.silhouette, expected)
    body_rows, body_cols = np.flatnonzero(expected.any(axis=1)), np.flatnonzero(expected.any(axis=0))
    assert abs((body_cols[0] + body_cols[-1]) / 2 - 7.5) <= 0.5 and abs((body_rows[0] + body_rows[-1]) / 2 - 3.5) <= 1
    np.testing.assert_allclose(frame(image, spec, origin_uv=origin + [1.0, 0.0]).image.pixel_to_ras[:3, 3],
                               image.uvd_to_ras([[origin[0] + 1.0, origin[1], 0.0]])[0])
    network_input = canvas.network_input()
    assert network_input.dtype == np.float32 and network_input.shape == (3, 8, 16)


def test_a_canvas_larger_than_the_source_copies_it_whole_and_nothing_beyond():
    """Guards the source's edges: a canvas at the source's pixel size reaching past all four sides holds every source
    pixel, the first and last rows and columns included, once and in place, and marks the rest out of the field."""
    rng = np.random.default_rng(15)
    silhouette = rng.random((7, 9)) < 0.5  # rows and columns differ from their neighbours, so a shifted one shows
    depth = np.where(silhouette, np.arange(63.0).reshape(7, 9), np.nan).astype(np.float32)
    image = ProjectedImage(silhouette=silhouette, depth_mm=depth,
                           pixel_to_ras=view_pixel_to_ras("lr", (5.0, 6.0, 7.0), (2.0, 2.0)), threshold=-300.5,
                           view="lr")
    canvas = frame(image, CanvasSpec(height=12, width=14, pixel_spacing_mm=2.0), origin_uv=np.array([-2.0, -3.0]))
    inside = (slice(3, 10), slice(2, 11))  # canvas rows 3-9 and columns 2-10 are source rows 0-6 and columns 0-8
    expected_field = np.zeros((12, 14), dtype=bool)
    expected_field[inside] = True
    np.testing.assert_array_equal(canvas.in_field, expected_field)
    np.testing.assert_array_equal(canvas.image.silhouette[inside], silhouette)
    assert not canvas.image.silhouette[~expected_field].any()
    np.testing.assert_array_equal(canvas.image.depth_mm[inside], depth)
    # The canvas is still a projection of that threshold, seen from that side.
    assert (canvas.image.threshold, canvas.image.view) == (-300.5, "lr")


def test_a_canvas_of_8_x_8_pixels_of_any_positive_finite_size_is_accepted():
    assert CanvasSpec(height=8, width=8, pixel_spacing_mm=0.5).width == 8


@pytest.mark.parametrize("height, width", [(20, 7), (7, 20)])
def test_a_canvas_narrower_or_lower_than_8_pixels_is_refused(height, width):
    with pytest.raises(InputError, match=f"canvas must be at least 8 x 8 pixels, got {width} x {height}"):
        CanvasSpec(height=height, width=width, pixel_spacing_mm=2.0)


@pytest.mark.parametrize("spacing", [0.0, -1.0, float("inf"), float("nan")])
def test_a_canvas_pixel_size_that_is_not_positive_and_finite_is_refused(spacing):
    with pytest.raises(InputError, match="canvas pixel_spacing_mm must be positive"):
        CanvasSpec(height=8, width=8, pixel_spacing_mm=spacing)
