"""Limb tips (a whole body's middle fingertips) placed at the end of the limb read from the volume.

On a whole-body canvas (10 mm pixels) a hand is a few pixels wide, and the network places a middle fingertip
centimetres off on real anatomy, often on the hand but short of its end. A middle fingertip is the farthest point of
its hand from its shoulder: detection takes the body connected to the network's point (within CONNECT_MM of it, so
that fingers join at the palm) and places the landmark at that body's extreme within TIP_SEARCH_MM, along the line
from the network's shoulder to the network's fingertip (``ModelMetadata.limb_tips``). Where that extreme is no
limb's end, the network's point stays: the extreme reaches the search's edge (a limb that goes on), lies on the
volume's boundary (the limb may go on beyond the scanned field), or lies
on bulky body (a hand on the belly or thigh, whose extreme is the trunk's or the thigh's). A limb tip without an end
is not in the scanned field: detection never reports it found.

With a mirror check the network's estimates on the canvas and on its mirror are refined each on its own; their
distance afterwards is the landmark's disagreement (infinite when either has no end), so that a fingertip is
reported found only where both ends agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from . import geometry

TIP_SEARCH_MM = 60.0
"""The body within this distance of the network's point, connected to the body voxel nearest that point, is the
limb searched for its end."""
CONNECT_MM = 100.0
"""Connections through the body that reach at most this far from the network's point (along each voxel axis) count:
fingers that part within TIP_SEARCH_MM of it join at the palm."""
TIP_EDGE_MM = 2.0
"""An extreme within this distance of the search ball's edge (along the limb) runs on beyond it: no limb's end."""
BULK_RADIUS_MM = 40.0
BULK_FRACTION = 0.035
"""A limb's end is not bulky: the body connected to it within BULK_RADIUS_MM fills at most this share of that ball
(a hand is a thin part of it; a trunk or thigh next to a hand lying on it, whose extreme is theirs, fills much of
it)."""
SAMPLE_MM = 2.0
"""The volume is read every this many mm (whole voxels) or at its own voxel size where that is coarser: a hand's end
is placed to about a sample, and a fine scan is not read voxel by voxel over 20 cm."""
_NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)  # 26-connected


def _body_box(volume_kji: NDArray, m: NDArray[np.float64], centre_ras: NDArray[np.float64], reach_mm: float,
              threshold: float) -> tuple[NDArray[np.bool_], NDArray[np.intp], NDArray[np.float64],
                                         NDArray[np.bool_], NDArray[np.float64]] | None:
    """The volume's body (voxels >= ``threshold``) in the box of voxels reaching ``reach_mm`` from a point along each
    voxel axis, sampled every SAMPLE_MM or finer: a mask over the samples ([k, j, i]), the mask's samples (M, 3) as
    its indices [k, j, i], their centres (M, 3) in RAS mm, whether each lies on the volume's boundary (M,: no
    further sample along some axis), and the samples' own 4x4 index-to-RAS matrix; None when the box misses the
    volume."""
    shape_ijk = np.array(np.shape(volume_kji)[::-1])
    spacing = geometry.spacing_mm(m)
    step = np.maximum(np.floor(SAMPLE_MM / spacing), 1).astype(np.int64)
    centre = geometry.apply_affine(np.linalg.inv(m), centre_ras[None])[0]
    reach = np.ceil(reach_mm / spacing).astype(np.int64)
    low = np.maximum(np.floor(centre).astype(np.int64) - reach, 0)
    high = np.minimum(np.ceil(centre).astype(np.int64) + reach + 1, shape_ijk)
    if np.any(high <= low):
        return None
    body = np.asarray(volume_kji)[low[2]:high[2]:step[2], low[1]:high[1]:step[1], low[0]:high[0]:step[0]] >= threshold
    kji = np.argwhere(body)
    ijk = kji[:, ::-1] * step + low
    sampled_to_ras = m.copy()
    sampled_to_ras[:3, :3] = m[:3, :3] * step
    sampled_to_ras[:3, 3] = geometry.apply_affine(m, low[None])[0]
    on_boundary = np.any((ijk == 0) | (ijk + step > shape_ijk - 1), axis=1)
    return body, kji, geometry.apply_affine(m, ijk), on_boundary, sampled_to_ras


def _connected_to(mask: NDArray[np.bool_], kji: NDArray[np.intp], distance: NDArray[np.float64]
                  ) -> NDArray[np.bool_]:
    """Which of ``mask``'s voxels ``kji`` (M, 3) lie in its 26-connected part that holds the one of smallest
    ``distance`` (M,)."""
    labels, _ = ndimage.label(mask, structure=_NEIGHBOURS)
    voxel_labels = labels[tuple(kji.T)]
    return voxel_labels == voxel_labels[np.argmin(distance)]


def limb_tip(volume_kji: NDArray, ijk_to_ras: ArrayLike, point_ras: ArrayLike, base_ras: ArrayLike,
             threshold: float) -> NDArray[np.float64] | None:
    """The end of the limb at ``point_ras``: its body's farthest surface point in the direction from ``base_ras``.

    The limb is the body (voxels >= ``threshold``) within TIP_SEARCH_MM of the point that is 26-connected to the body
    voxel nearest it, through body up to CONNECT_MM from the point (read every SAMPLE_MM or finer). The end is the
    mean of the sample centres within half a sample of its farthest one along the direction, moved out to half a
    sample beyond that farthest centre (the surface lies between the last body sample and the air).

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
    point = np.asarray(point_ras, dtype=np.float64)
    direction = point - np.asarray(base_ras, dtype=np.float64)
    if np.linalg.norm(direction) < 1e-6:
        return None
    direction /= np.linalg.norm(direction)
    box = _body_box(volume_kji, m, point, CONNECT_MM, threshold)
    if box is None or not len(box[1]):
        return None
    body, kji, ras, on_boundary, sample_to_ras = box
    from_point = np.linalg.norm(ras - point, axis=1)
    limb = _connected_to(body, kji, from_point) & (from_point <= TIP_SEARCH_MM)
    if not limb.any():
        return None
    along = ras[limb] @ direction
    if along.max() - point @ direction >= TIP_SEARCH_MM - TIP_EDGE_MM:
        return None
    half_voxel = 0.5 * float(np.sum(np.abs(direction @ sample_to_ras[:3, :3])))
    extreme = along >= along.max() - half_voxel
    if on_boundary[limb][extreme].any():  # the limb may go on beyond the scanned field
        return None
    centre = ras[limb][extreme].mean(axis=0)
    end = centre + (along.max() + half_voxel - centre @ direction) * direction
    distance = np.linalg.norm(ras - end, axis=1)
    close = distance <= BULK_RADIUS_MM
    low, high = kji[close].min(axis=0), kji[close].max(axis=0) + 1  # label only the samples around the end
    near_body = np.zeros(tuple(high - low), dtype=bool)
    near_body[tuple((kji[close] - low).T)] = True
    near = _connected_to(near_body, kji[close] - low, distance[close])
    voxel_mm3 = abs(float(np.linalg.det(sample_to_ras[:3, :3])))
    if near.sum() * voxel_mm3 > BULK_FRACTION * 4.0 / 3.0 * np.pi * BULK_RADIUS_MM ** 3:
        return None
    return end


def at_limb_tips(points_ras: NDArray[np.float64], views_ras: Sequence[NDArray[np.float64]],
                 disagreement_mm: NDArray[np.float64], names: Sequence[str], limb_tips: Mapping[str, str],
                 volume_kji: NDArray, ijk_to_ras: ArrayLike, threshold: float
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """The limb tips in ``limb_tips`` (tip name -> its base landmark's name) moved to their limb's end (``limb_tip``
    of each point and its base's point), and, with two views (the network's estimates on the canvas and on its
    mirror, (N, 3) RAS mm each), their disagreement replaced by the distance between the two views' ends (infinite
    when either has none). Other landmarks, and tips without an end, keep their point; one view keeps the
    disagreement as it is.

    Returns:
        Copies of the points (N, 3) and of the disagreements (N,); (N,) True for the limb tips without an end.
    """
    points = np.array(points_ras, dtype=np.float64)
    disagreement = np.array(disagreement_mm, dtype=np.float64)
    no_end = np.zeros(len(names), dtype=bool)
    for tip, base in limb_tips.items():
        n, b = names.index(tip), names.index(base)
        end = limb_tip(volume_kji, ijk_to_ras, points_ras[n], points_ras[b], threshold)
        if end is None:
            no_end[n] = True
        else:
            points[n] = end
        if len(views_ras) == 2:
            ends = [limb_tip(volume_kji, ijk_to_ras, view[n], view[b], threshold) for view in views_ras]
            disagreement[n] = np.inf if any(e is None for e in ends) else float(np.linalg.norm(ends[0] - ends[1]))
    return points, disagreement, no_end
