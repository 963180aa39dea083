"""Skin landmarks placed on the body's surface read from the volume near the network's point: at its farthest point
in a patient direction, or on its nearest surface when the network put them in the air.

Some skin landmarks are defined as an extreme of the body surface: the head top is its most superior point, a big
toe's tip its most distal one (anterior, a little inferior, on a supine or prone patient). The network finds them
on a coarse canvas (10 mm pixels for whole bodies) and takes their depth from the whole body's surface statistics,
which differ between bodies (DESIGN §1). Detection therefore projects the volume again at its own resolution in a
small window around the network's point and places the landmark at the body's extreme there
(``ModelMetadata.surface_extremes``), with the projection's own table removal and speck filter. Other skin landmarks
(fingertips) are not extremes in a fixed direction, but they lie on the skin: one that the network places in the air
a few millimetres beyond a fingertip is moved onto the nearest body surface (``ModelMetadata.onto_skin``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import geometry
from .projection import VIEW_AXES_RAS, ProjectedImage, ProjectionConfig, project_volume
from .thickness import body_runs_along_ray, nearest_run

SEARCH_BEHIND_MM = 40.0
"""The window reaches this far from the network's point against the direction (towards the body)..."""
SEARCH_AHEAD_MM = 20.0
"""...this far along it (beyond the body)..."""
SEARCH_HALF_WIDTH_MM = 25.0
"""...this far to either side of it, in the image plane..."""
SEARCH_DEPTH_MM = 50.0
"""...and, for a direction facing the viewer, this far in front of and behind it along the viewing ray, so that the
table or a limb far behind the landmark is not taken for it."""
SLAB_HALF_DEPTH_MM = 25.0
"""For a direction in the image plane, only body within this distance of the network's depth counts: an arm raised
over the head lies above the vertex in the image, but behind it."""
FACING_COSINE = 0.5
"""A direction within 60 degrees of the viewer's is an extreme of the front surface; a direction nearer the image
plane is taken in the image plane, at the middle of the body's thickness along the ray."""
ONTO_SKIN_SEARCH_MM = 10.0
"""A skin landmark placed in the air is moved onto the body only when body lies within this distance of it."""


def _unit(v: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def window_projection(volume_kji: NDArray, ijk_to_ras: NDArray[np.float64], corners_ras: NDArray[np.float64],
                      ray_ras: NDArray[np.float64], half_depth_mm: float,
                      config: ProjectionConfig) -> ProjectedImage | None:
    """The projection, at the volume's own resolution, of the part of the volume around the in-plane rectangle
    ``corners_ras`` and ``half_depth_mm`` in front of and behind it; None when that misses the volume."""
    shape_ijk = np.array(np.shape(volume_kji)[::-1])
    ends = np.concatenate([corners_ras - half_depth_mm * ray_ras, corners_ras + half_depth_mm * ray_ras])
    ijk = geometry.apply_affine(np.linalg.inv(ijk_to_ras), ends)
    low = np.maximum(np.floor(ijk.min(axis=0)).astype(np.int64) - 1, 0)
    high = np.minimum(np.ceil(ijk.max(axis=0)).astype(np.int64) + 2, shape_ijk)
    if np.any(high <= low):
        return None
    crop = np.asarray(volume_kji)[low[2]:high[2], low[1]:high[1], low[0]:high[0]]
    crop_to_ras = ijk_to_ras.copy()
    crop_to_ras[:3, 3] = geometry.apply_affine(ijk_to_ras, low[None, :])[0]
    return project_volume(crop, crop_to_ras, config)


def surface_extreme(volume_kji: NDArray, ijk_to_ras: ArrayLike, point_ras: ArrayLike, direction_ras: ArrayLike,
                    config: ProjectionConfig, threshold: float) -> NDArray[np.float64] | None:
    """The body's farthest surface point along ``direction_ras`` among the rays near ``point_ras``.

    The window is a box around the point: ``SEARCH_BEHIND_MM`` back and ``SEARCH_AHEAD_MM`` forward along the
    direction's in-plane part, ``SEARCH_HALF_WIDTH_MM`` to either side, and along the ray ``SEARCH_DEPTH_MM`` for a
    direction facing the viewer (``FACING_COSINE``), ``SLAB_HALF_DEPTH_MM`` for another one. The volume is projected
    there as detection projects it (``config``, at ``threshold``, at the voxel spacing), so table plates and specks
    are left out the same way. A direction facing the viewer scores the front surface of each ray; another one
    scores its in-plane part, and the point's depth is the middle of the body's stretch at the network's depth along
    those rays, kept within ``SLAB_HALF_DEPTH_MM`` of that depth. The point returned lies at the best score, plus
    half a pixel (the surface lies on average half a voxel beyond the last body voxel's centre), at the mean
    position of the surface points within that half pixel of the best.

    Args:
        volume_kji: voxels indexed [k, j, i].
        ijk_to_ras: 4x4 voxel-centre-to-RAS matrix, mm.
        point_ras: (3,) the network's point, RAS mm.
        direction_ras: (3,) the patient direction in which the landmark is the body's extreme (any length).
        config: the model's projection settings.
        threshold: the body/air threshold detection used.
    Returns:
        (3,) RAS mm; None when no body is in the window or the direction points nearly along the viewing ray,
        away from the viewer.
    """
    m = geometry.validate_ijk_to_ras(ijk_to_ras)
    point = np.asarray(point_ras, dtype=np.float64)
    axes = VIEW_AXES_RAS[config.view]
    ray = axes[2]
    e = _unit(direction_ras)
    facing = float(e @ ray) <= -FACING_COSINE
    along = e - (e @ ray) * ray
    if np.linalg.norm(along) < FACING_COSINE and not facing:
        return None
    # A direction straight at the viewer has no in-plane part: a square window then.
    behind, ahead = (SEARCH_BEHIND_MM, SEARCH_AHEAD_MM) if np.linalg.norm(along) > 1e-6 else \
        (SEARCH_HALF_WIDTH_MM, SEARCH_HALF_WIDTH_MM)
    along = _unit(along) if np.linalg.norm(along) > 1e-6 else axes[1]
    side = np.cross(ray, along)
    corners = np.array([point + a * along + s * side for a in (-behind, ahead)
                        for s in (-SEARCH_HALF_WIDTH_MM, SEARCH_HALF_WIDTH_MM)])
    local = dataclasses.replace(config, threshold=threshold, pixel_spacing_mm=None)
    image = window_projection(volume_kji, m, corners, ray, SEARCH_DEPTH_MM if facing else SLAB_HALF_DEPTH_MM, local)
    if image is None:
        return None
    v, u = np.nonzero(image.silhouette)
    front = image.uvd_to_ras(np.column_stack([u, v, image.depth_mm[v, u]]))
    offset = front - point
    inside = ((offset @ along >= -behind) & (offset @ along <= ahead)
              & (np.abs(offset @ side) <= SEARCH_HALF_WIDTH_MM))
    if not inside.any():
        return None
    front = front[inside]
    scored = e if facing else along
    # The surface lies on average half a pixel beyond the last body pixel's centre in the image plane (the depth
    # image is already at the surface); the rays within that half pixel of the best tie with it.
    beyond = 0.5 * (abs(scored @ image.pixel_to_ras[:3, 0]) + abs(scored @ image.pixel_to_ras[:3, 1]))
    score = front @ scored
    best = front[score >= score.max() - max(beyond, 1e-6)]
    if not facing:  # the middle of the body's stretch at the network's depth along each ray, not its front
        middles = []
        for p in best:
            at_depth = p + ((point - p) @ ray) * ray
            run = nearest_run(body_runs_along_ray(volume_kji, m, at_depth, ray, threshold, config.surface_min_mm))
            middles.append(p if run is None else
                           at_depth + np.clip(0.5 * (run[0] + run[1]), -SLAB_HALF_DEPTH_MM, SLAB_HALF_DEPTH_MM) * ray)
        best = np.array(middles)
    centre = best.mean(axis=0)
    return centre + (score.max() + beyond - centre @ scored) * scored


def at_surface_extremes(points_ras: NDArray[np.float64], names: Sequence[str],
                        directions: Mapping[str, Sequence[float]], volume_kji: NDArray, ijk_to_ras: ArrayLike,
                        config: ProjectionConfig, threshold: float) -> NDArray[np.float64]:
    """Points of the landmarks in ``directions`` moved to the body's extreme near them (``surface_extreme``); the
    others, and those with no body near them, unchanged."""
    return _moved(points_ras, names, directions, lambda point, name: surface_extreme(
        volume_kji, ijk_to_ras, point, directions[name], config, threshold))


def extremes_disagreement(views_ras: Sequence[NDArray[np.float64]], disagreement_mm: NDArray[np.float64],
                          names: Sequence[str], directions: Mapping[str, Sequence[float]], volume_kji: NDArray,
                          ijk_to_ras: ArrayLike, config: ProjectionConfig, threshold: float) -> NDArray[np.float64]:
    """A copy of the disagreements in which, with two views (the network's estimates on the canvas and on its mirror,
    (N, 3) RAS mm each), each landmark in ``directions`` has the distance between the two views' extremes
    (``surface_extreme`` of each view's point; infinite when either has none): where detection places it, two
    estimates on the same head top agree although their raw points lie centimetres apart. One view keeps the
    disagreements as they are."""
    out = np.array(disagreement_mm, dtype=np.float64)
    if len(views_ras) != 2:
        return out
    for n, name in enumerate(names):
        if name in directions:
            ends = [surface_extreme(volume_kji, ijk_to_ras, view[n], directions[name], config, threshold)
                    for view in views_ras]
            out[n] = np.inf if ends[0] is None or ends[1] is None else float(np.linalg.norm(ends[0] - ends[1]))
    return out


def _moved(points_ras: ArrayLike, names: Sequence[str], selected: Collection[str],
           move: Callable[[NDArray[np.float64], str], NDArray[np.float64] | None]) -> NDArray[np.float64]:
    """A copy of the points with each selected landmark's point replaced by ``move(point, name)`` unless that is
    None."""
    out = np.array(points_ras, dtype=np.float64)
    for n, name in enumerate(names):
        if name in selected:
            moved = move(out[n], name)
            if moved is not None:
                out[n] = moved
    return out


def onto_skin(volume_kji: NDArray, ijk_to_ras: ArrayLike, point_ras: ArrayLike,
              threshold: float) -> NDArray[np.float64] | None:
    """The body's surface point nearest ``point_ras`` when that point lies in the air; None when it lies in the body
    or no body voxel (intensity >= ``threshold``) lies within ``ONTO_SKIN_SEARCH_MM`` of it.

    The surface is taken half a voxel beyond the nearest body voxel's centre, towards the point (the surface lies
    between that voxel and its air neighbour), and never beyond the point itself.
    """
    m = geometry.validate_ijk_to_ras(ijk_to_ras)
    point = np.asarray(point_ras, dtype=np.float64)
    volume = np.asarray(volume_kji)
    shape_ijk = np.array(volume.shape[::-1])
    centre = geometry.apply_affine(np.linalg.inv(m), point[None])[0]
    voxel = np.round(centre).astype(np.int64)
    if np.all((voxel >= 0) & (voxel < shape_ijk)) and volume[voxel[2], voxel[1], voxel[0]] >= threshold:
        return None
    reach = np.ceil(ONTO_SKIN_SEARCH_MM / geometry.spacing_mm(m)).astype(np.int64)
    low = np.maximum(np.floor(centre).astype(np.int64) - reach, 0)
    high = np.minimum(np.ceil(centre).astype(np.int64) + reach + 1, shape_ijk)
    if np.any(high <= low):
        return None
    k, j, i = np.nonzero(volume[low[2]:high[2], low[1]:high[1], low[0]:high[0]] >= threshold)
    if not k.size:
        return None
    body = geometry.apply_affine(m, np.column_stack([i, j, k]) + low)
    distance = np.linalg.norm(body - point, axis=1)
    nearest = int(np.argmin(distance))
    if distance[nearest] > ONTO_SKIN_SEARCH_MM:
        return None
    towards = (point - body[nearest]) / distance[nearest]
    half_voxel = 0.5 * float(np.sum(np.abs(towards @ m[:3, :3])))
    return body[nearest] + min(half_voxel, float(distance[nearest])) * towards


def at_skin(points_ras: NDArray[np.float64], names: Sequence[str], skin_names: Sequence[str], volume_kji: NDArray,
            ijk_to_ras: ArrayLike, threshold: float) -> NDArray[np.float64]:
    """Points of the landmarks in ``skin_names`` that lie in the air moved onto the body's nearest surface
    (``onto_skin``); the others, and those in the body or far from it, unchanged."""
    return _moved(points_ras, names, skin_names, lambda point, _: onto_skin(volume_kji, ijk_to_ras, point, threshold))
