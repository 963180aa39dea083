"""Limb tips (a whole body's middle fingertips) placed at the end of the limb read from the volume.

On a whole-body canvas (10 mm pixels) a hand is a few pixels wide, and the network places a middle fingertip
centimetres off on real anatomy, often on the hand but short of its end. A middle fingertip is the farthest point of
its hand from its shoulder: detection takes the body connected to the network's point (within CONNECT_MM of it, so
that fingers join at the palm) and places the landmark at that body's extreme within TIP_SEARCH_MM, along the line
from the network's shoulder to the network's fingertip (``ModelMetadata.limb_tips``). Where that extreme is no
limb's end, the network's point stays: the extreme reaches the search's edge (a limb that goes on), lies on the
volume's boundary (the limb may go on beyond the scanned field), or lies on bulky body (a hand on the belly or thigh,
whose extreme is the trunk's or the thigh's). A limb tip without an end is not in the scanned field: detection never
reports it found.

The limb and its bulk are read every SAMPLE_MM (4 mm), the end then at the volume's own voxels around the limb's
farthest samples: about 15 ms for both middle fingertips where the box read is full of body, on a 0.9 x 0.9 x
1.5 mm CT (``benchmarks/bench_detect.py``).

With a mirror check the network's estimates on the canvas and on its mirror are refined each on its own; their
distance afterwards is the landmark's disagreement (infinite when either has no end), so that a fingertip is
reported found only where both ends agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from . import geometry

TIP_SEARCH_MM = 60.0
"""The body within this distance of the network's point, connected to the body sample nearest that point, is the
limb searched for its end."""
CONNECT_MM = 100.0
"""Connections through the body that reach at most this far beyond the points searched from (along each voxel axis)
count: fingers that part within TIP_SEARCH_MM of the point join at the palm."""
TIP_EDGE_MM = 2.0
"""An extreme within this distance of the search ball's edge (along the limb) runs on beyond it: no limb's end."""
BULK_RADIUS_MM = 40.0
BULK_FRACTION = 0.035
"""A limb's end is not bulky: the body connected to it within BULK_RADIUS_MM fills at most this share of that ball
(a hand is a thin part of it; a trunk or thigh next to a hand lying on it, whose extreme is theirs, fills much of
it)."""
SAMPLE_MM = 4.0
"""The limb and its bulk are read every this many mm (whole voxels) or at the volume's voxel size where that is
coarser: a finger is three or more samples wide, and a fine scan is not read voxel by voxel over 20 cm. The end is
then placed at the volume's own voxels, within a sample of the limb's farthest samples."""
_NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)  # 26-connected


class _SampledBody(NamedTuple):
    """The volume's body in a box, read every few voxels and split into its 26-connected parts."""

    parts: NDArray[np.int32]  # [k, j, i] over the samples: 0 air, 1... the body's connected parts
    sample_to_ras: NDArray[np.float64]  # 4x4: sample index (i, j, k) to RAS mm
    low: NDArray[np.int64]  # (3,) the voxel index (i, j, k) of sample (0, 0, 0)
    step: NDArray[np.int64]  # (3,) voxels from one sample to the next along i, j, k


def _sampled_body(volume_kji: NDArray, m: NDArray[np.float64], points_ras: NDArray[np.float64],
                  threshold: float) -> _SampledBody | None:
    """The body (voxels >= ``threshold``) in the box of voxels reaching CONNECT_MM beyond ``points_ras`` (P, 3)
    along each voxel axis, read every SAMPLE_MM or finer; None when the box misses the volume."""
    shape_ijk = np.array(np.shape(volume_kji)[::-1])
    spacing = geometry.spacing_mm(m)
    step = np.maximum(np.floor(SAMPLE_MM / spacing), 1).astype(np.int64)
    ijk = geometry.apply_affine(np.linalg.inv(m), points_ras)
    reach = np.ceil(CONNECT_MM / spacing).astype(np.int64)
    low = np.maximum(np.floor(ijk.min(axis=0)).astype(np.int64) - reach, 0)
    high = np.minimum(np.ceil(ijk.max(axis=0)).astype(np.int64) + reach + 1, shape_ijk)
    if np.any(high <= low):
        return None
    body = np.asarray(volume_kji)[low[2]:high[2]:step[2], low[1]:high[1]:step[1], low[0]:high[0]:step[0]] >= threshold
    parts, _ = ndimage.label(body, structure=_NEIGHBOURS)
    sample_to_ras = m.copy()
    sample_to_ras[:3, :3] = m[:3, :3] * step
    sample_to_ras[:3, 3] = geometry.apply_affine(m, low[None])[0]
    return _SampledBody(parts, sample_to_ras, low, step)


def _samples_near(body: _SampledBody, centre_ras: NDArray[np.float64], radius_mm: float
                  ) -> tuple[NDArray[np.intp], NDArray[np.int32], NDArray[np.float64]]:
    """The body's samples in the box reaching ``radius_mm`` from a point along each sample axis: their indices
    (M, 3) as [k, j, i], their parts (M,) and their centres (M, 3) in RAS mm."""
    centre = geometry.apply_affine(np.linalg.inv(body.sample_to_ras), centre_ras[None])[0]
    reach = np.ceil(radius_mm / geometry.spacing_mm(body.sample_to_ras)).astype(np.int64)
    low = np.clip(np.floor(centre).astype(np.int64) - reach, 0, None)
    high = np.minimum(np.ceil(centre).astype(np.int64) + reach + 1, body.parts.shape[::-1])
    if np.any(high <= low):
        return np.zeros((0, 3), dtype=np.intp), np.zeros(0, dtype=np.int32), np.zeros((0, 3))
    kji = np.argwhere(body.parts[low[2]:high[2], low[1]:high[1], low[0]:high[0]]) + low[::-1]
    return kji, body.parts[tuple(kji.T)], geometry.apply_affine(body.sample_to_ras, kji[:, ::-1])


def _farthest_surface(volume_kji: NDArray, m: NDArray[np.float64], low: NDArray[np.int64],
                      high: NDArray[np.int64], direction: NDArray[np.float64], threshold: float
                      ) -> NDArray[np.float64] | None:
    """The body's surface farthest along ``direction`` among the voxels [low, high) (i, j, k): the mean of the voxel
    centres within half a voxel of the farthest one, moved out to half a voxel beyond it (the surface lies between
    the last body voxel and the air); None when that extreme lies on the volume's boundary (the body may go on
    beyond the scanned field)."""
    shape_ijk = np.array(np.shape(volume_kji)[::-1])
    low, high = np.maximum(low, 0), np.minimum(high, shape_ijk)
    block = np.asarray(volume_kji)[low[2]:high[2], low[1]:high[1], low[0]:high[0]] >= threshold
    ijk = np.argwhere(block)[:, ::-1] + low
    ras = geometry.apply_affine(m, ijk)
    along = ras @ direction
    half_voxel = 0.5 * float(np.sum(np.abs(direction @ m[:3, :3])))
    extreme = along >= along.max() - half_voxel
    if np.any((ijk[extreme] == 0) | (ijk[extreme] == shape_ijk - 1)):
        return None
    centre = ras[extreme].mean(axis=0)
    return centre + (along.max() + half_voxel - centre @ direction) * direction


def _connected_to(mask: NDArray[np.bool_], kji: NDArray[np.intp], distance: NDArray[np.float64]
                  ) -> NDArray[np.bool_]:
    """Which of ``mask``'s voxels ``kji`` (M, 3) lie in its 26-connected part that holds the one of smallest
    ``distance`` (M,)."""
    labels, _ = ndimage.label(mask, structure=_NEIGHBOURS)
    voxel_labels = labels[tuple(kji.T)]
    return voxel_labels == voxel_labels[np.argmin(distance)]


def _limb_end(volume_kji: NDArray, m: NDArray[np.float64], body: _SampledBody, point: NDArray[np.float64],
              base: NDArray[np.float64], threshold: float) -> NDArray[np.float64] | None:
    """``limb_tip`` on the body sampled around the point."""
    direction = point - base
    if np.linalg.norm(direction) < 1e-6:
        return None
    direction = direction / np.linalg.norm(direction)
    kji, parts, ras = _samples_near(body, point, TIP_SEARCH_MM)
    from_point = np.linalg.norm(ras - point, axis=1)
    if not np.any(from_point <= TIP_SEARCH_MM):
        return None
    limb = (from_point <= TIP_SEARCH_MM) & (parts == parts[np.argmin(from_point)])
    along = ras[limb] @ direction
    if along.max() - point @ direction >= TIP_SEARCH_MM - TIP_EDGE_MM:
        return None
    half_sample = 0.5 * float(np.sum(np.abs(direction @ body.sample_to_ras[:3, :3])))
    farthest = kji[limb][along >= along.max() - half_sample][:, ::-1] * body.step + body.low  # voxels (i, j, k)
    end = _farthest_surface(volume_kji, m, farthest.min(axis=0) - body.step, farthest.max(axis=0) + body.step + 1,
                            direction, threshold)
    if end is None:  # the limb may go on beyond the scanned field
        return None
    kji, _, ras = _samples_near(body, end, BULK_RADIUS_MM)
    close = np.linalg.norm(ras - end, axis=1) <= BULK_RADIUS_MM
    kji, distance = kji[close], np.linalg.norm(ras[close] - end, axis=1)
    low = kji.min(axis=0)  # label only the samples around the end
    near_body = np.zeros(tuple(kji.max(axis=0) + 1 - low), dtype=bool)
    near_body[tuple((kji - low).T)] = True
    near = _connected_to(near_body, kji - low, distance)
    sample_mm3 = abs(float(np.linalg.det(body.sample_to_ras[:3, :3])))
    if near.sum() * sample_mm3 > BULK_FRACTION * 4.0 / 3.0 * np.pi * BULK_RADIUS_MM ** 3:
        return None
    return end


def _ends(volume_kji: NDArray, m: NDArray[np.float64], points_ras: NDArray[np.float64],
          bases_ras: NDArray[np.float64], threshold: float) -> list[NDArray[np.float64] | None]:
    """``limb_tip`` of each point (P, 3) with its base (P, 3) in turn, up to the first point without an end (the
    points after it are not searched: None). Points within CONNECT_MM of each other share one read of the body."""
    share = np.ptp(points_ras, axis=0).max() <= CONNECT_MM
    shared = _sampled_body(volume_kji, m, points_ras, threshold) if share else None
    ends: list[NDArray[np.float64] | None] = [None] * len(points_ras)
    for p, (point, base) in enumerate(zip(points_ras, bases_ras, strict=True)):
        body = shared if share else _sampled_body(volume_kji, m, point[None], threshold)
        ends[p] = None if body is None else _limb_end(volume_kji, m, body, point, base, threshold)
        if ends[p] is None:
            break
    return ends


def limb_tip(volume_kji: NDArray, ijk_to_ras: ArrayLike, point_ras: ArrayLike, base_ras: ArrayLike,
             threshold: float) -> NDArray[np.float64] | None:
    """The end of the limb at ``point_ras``: its body's farthest surface point in the direction from ``base_ras``.

    The limb is the body (voxels >= ``threshold``, read every SAMPLE_MM or finer) within TIP_SEARCH_MM of the point
    that is 26-connected to the body sample nearest it, through body up to CONNECT_MM from the point. Its end is the
    body's surface farthest along the direction among the volume's voxels within a sample of the limb's farthest
    samples (``_farthest_surface``).

    Args:
        volume_kji: voxels indexed [k, j, i].
        ijk_to_ras: 4x4 voxel-centre-to-RAS matrix, mm.
        point_ras: (3,) the network's limb tip, RAS mm.
        base_ras: (3,) the network's point at the limb's root (a shoulder), RAS mm.
        threshold: the body/air threshold detection used.
    Returns:
        (3,) RAS mm; None when no body lies near the point, the point lies on the base, or the end found is none:
        it reaches the search's edge (TIP_EDGE_MM) or the volume's boundary (the limb may go on beyond the scanned
        field), or it is bulky (BULK_FRACTION).
    """
    m = geometry.validate_ijk_to_ras(ijk_to_ras)
    point, base = (np.asarray(p, dtype=np.float64)[None] for p in (point_ras, base_ras))
    return _ends(volume_kji, m, point, base, threshold)[0]


def at_limb_tips(points_ras: NDArray[np.float64], views_ras: Sequence[NDArray[np.float64]],
                 disagreement_mm: NDArray[np.float64], names: Sequence[str], limb_tips: Mapping[str, str],
                 volume_kji: NDArray, ijk_to_ras: ArrayLike, threshold: float
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """The limb tips in ``limb_tips`` (tip name -> its base landmark's name) moved to their limb's end (``limb_tip``
    of each point and its base's point), and, with two views (the network's estimates on the canvas and on its
    mirror, (N, 3) RAS mm each), their disagreement replaced by the distance between the two views' ends (infinite
    when the point or either view has none; the views of a point without an end are not searched). Other
    landmarks, and tips without an end, keep their point; one view keeps the disagreement as it is.

    Returns:
        Copies of the points (N, 3) and of the disagreements (N,); (N,) True for the limb tips without an end.
    """
    m = geometry.validate_ijk_to_ras(ijk_to_ras)
    points = np.array(points_ras, dtype=np.float64)
    disagreement = np.array(disagreement_mm, dtype=np.float64)
    no_end = np.zeros(len(names), dtype=bool)
    views = list(views_ras) if len(views_ras) == 2 else []
    for tip, base in limb_tips.items():
        n, b = names.index(tip), names.index(base)
        ends = _ends(volume_kji, m, np.array([points_ras[n]] + [view[n] for view in views]),
                     np.array([points_ras[b]] + [view[b] for view in views]), threshold)
        if ends[0] is None:
            no_end[n] = True
        else:
            points[n] = ends[0]
        if views:
            disagreement[n] = np.inf if any(e is None for e in ends[1:]) else float(np.linalg.norm(ends[1] - ends[2]))
    return points, disagreement, no_end
