"""Smooth convex primitives with analytic signed distance, support function and ray intersection.

Every primitive is a *round cone* (the convex hull of two balls) seen through an affine map. In its local frame
ball A (radius ``radius_a``) sits at the origin and ball B (radius ``radius_b``) at ``(0, 0, length)``; the map
``ras_from_local`` places it in RAS millimetres. A uniform map gives capsules and tapered limbs; scaling the
cross-section gives elliptical trunks and flat palms; ``length = 0`` with unit radius gives ellipsoids.
A part of the anatomy is the union of its primitives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Shapes:
    """N round cones under affine maps (struct of arrays).

    Attributes:
        ras_from_local: (N, 3, 4) local -> RAS mm affine maps.
        length: (N,) local distance between the two ball centres (0 for an ellipsoid).
        radius_a: (N,) local radius of the ball at the origin.
        radius_b: (N,) local radius of the ball at (0, 0, length).
    """

    ras_from_local: Array
    length: Array
    radius_a: Array
    radius_b: Array

    def __len__(self) -> int:
        return int(self.length.shape[0])

    @property
    def local_from_ras(self) -> Array:
        """(N, 3, 4) RAS mm -> local affine maps."""
        linear = np.linalg.inv(self.ras_from_local[:, :, :3])
        offset = -np.einsum("nij,nj->ni", linear, self.ras_from_local[:, :, 3])
        return np.concatenate([linear, offset[:, :, None]], axis=2)

    def subset(self, index: slice | NDArray[np.integer]) -> Shapes:
        """The primitives selected by ``index``."""
        return Shapes(self.ras_from_local[index], self.length[index], self.radius_a[index], self.radius_b[index])

    def transformed(self, matrix: ArrayLike) -> Shapes:
        """The same shapes moved by a 4x4 RAS -> RAS affine map (rigid motion, mirror, scaling)."""
        m = np.asarray(matrix, dtype=np.float64)
        linear = np.einsum("ij,njk->nik", m[:3, :3], self.ras_from_local[:, :, :3])
        offset = self.ras_from_local[:, :, 3] @ m[:3, :3].T + m[:3, 3]
        return Shapes(np.concatenate([linear, offset[:, :, None]], axis=2), self.length, self.radius_a, self.radius_b)

    def support(self, direction_ras: ArrayLike) -> tuple[Array, Array]:
        """Extreme point of each primitive in a direction.

        Args:
            direction_ras: (3,) direction (need not be unit length).
        Returns:
            (N,) largest value of ``direction . p`` over each primitive and the (N, 3) RAS points that reach it.
        """
        e = np.asarray(direction_ras, dtype=np.float64)
        linear = self.ras_from_local[:, :, :3]
        offset = self.ras_from_local[:, :, 3]
        mt_e = np.einsum("nji,j->ni", linear, e)  # M^T e, the direction in the local frame
        norm = np.linalg.norm(mt_e, axis=1)
        centre_b = offset + linear[:, :, 2] * self.length[:, None]
        value_a = offset @ e + self.radius_a * norm
        value_b = centre_b @ e + self.radius_b * norm
        reach = np.einsum("nij,nj->ni", linear, mt_e) / np.maximum(norm, 1e-300)[:, None]  # M M^T e / |M^T e|
        use_b = value_b > value_a
        points = np.where(use_b[:, None], centre_b + self.radius_b[:, None] * reach,
                          offset + self.radius_a[:, None] * reach)
        return np.maximum(value_a, value_b), points

    def boxes_ras(self) -> tuple[Array, Array]:
        """Exact axis-aligned bounding box of each primitive: (N, 3) low and (N, 3) high corners in RAS mm."""
        eye = np.eye(3)
        high = np.stack([self.support(eye[i])[0] for i in range(3)], axis=1)
        low = np.stack([-self.support(-eye[i])[0] for i in range(3)], axis=1)
        return low, high

    def bounds_ras(self) -> tuple[Array, Array]:
        """Exact axis-aligned bounding box of the union: (3,) low and (3,) high corners in RAS mm."""
        low, high = self.boxes_ras()
        return low.min(axis=0), high.max(axis=0)

    def signed_distance(self, points_ras: ArrayLike) -> Array:
        """Approximate signed distance (mm, negative inside) of points (..., 3) to each primitive: (N, ...).

        Exact for primitives whose map is a rigid motion; for scaled ones it is the local distance divided by
        the gradient length, exact on the surface and close to it within a few mm.
        """
        p = np.asarray(points_ras, dtype=np.float64)
        local_from_ras = self.local_from_ras
        out = np.empty((len(self),) + p.shape[:-1])
        for n in range(len(self)):
            q = p @ local_from_ras[n, :, :3].T + local_from_ras[n, :, 3]
            out[n] = local_signed_distance(q[..., 0], q[..., 1], q[..., 2], float(self.length[n]),
                                           float(self.radius_a[n]), float(self.radius_b[n]), local_from_ras[n, :, :3])
        return out

    def contains(self, points_ras: ArrayLike) -> NDArray[np.bool_]:
        """(...,) True where a point lies inside the union of the primitives."""
        return np.any(self.signed_distance(points_ras) < 0, axis=0)


def local_signed_distance(x: NDArray[np.floating], y: NDArray[np.floating], z: NDArray[np.floating], length: float,
                          radius_a: float, radius_b: float,
                          local_from_ras: NDArray[np.floating] | None = None) -> NDArray[np.floating]:
    """Signed distance of local points (x, y, z arrays) to one round cone; world mm if ``local_from_ras`` is given.

    The local distance is exact; with the 3x3 linear part of ``local_from_ras`` it is divided by the length of
    the world-space gradient (first-order world distance). Without it, only its sign is meaningful for scaled maps.
    """
    rho = np.sqrt(x * x + y * y)
    s = (radius_a - radius_b) / length if length > 0 else 0.0
    c = float(np.sqrt(1.0 - s * s))
    along = z * c - rho * s  # position along the cone's side line; 0 and length*c at the two tangent circles
    in_a = along < 0
    in_b = along > length * c
    zb = z - length
    dist_a = np.sqrt(rho * rho + z * z)
    dist_b = np.sqrt(rho * rho + zb * zb)
    d = np.where(in_a, dist_a - radius_a, np.where(in_b, dist_b - radius_b, rho * c + z * s - radius_a))
    if local_from_ras is None:
        return d
    # Unit local normal; its image under the transpose of the linear map is the world gradient.
    tiny = 1e-12
    na = 1.0 / np.maximum(dist_a, tiny)
    nb = 1.0 / np.maximum(dist_b, tiny)
    nr = c / np.maximum(rho, tiny)
    nx = x * np.where(in_a, na, np.where(in_b, nb, nr))
    ny = y * np.where(in_a, na, np.where(in_b, nb, nr))
    nz = np.where(in_a, z * na, np.where(in_b, zb * nb, s))
    a = np.asarray(local_from_ras)
    gx = a[0, 0] * nx + a[1, 0] * ny + a[2, 0] * nz
    gy = a[0, 1] * nx + a[1, 1] * ny + a[2, 1] * nz
    gz = a[0, 2] * nx + a[1, 2] * ny + a[2, 2] * nz
    return d / np.maximum(np.sqrt(gx * gx + gy * gy + gz * gz), tiny)


def concat(parts: list[Shapes]) -> Shapes:
    """One Shapes holding the primitives of all parts, in order."""
    return Shapes(np.concatenate([p.ras_from_local for p in parts]), np.concatenate([p.length for p in parts]),
                  np.concatenate([p.radius_a for p in parts]), np.concatenate([p.radius_b for p in parts]))


def cross3(a: ArrayLike, b: ArrayLike) -> Array:
    """Cross product of two 3-vectors (np.cross costs ~20 us per call on tiny arrays)."""
    a0, a1, a2 = a[0], a[1], a[2]  # type: ignore[index]
    b0, b1, b2 = b[0], b[1], b[2]  # type: ignore[index]
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def unit(v: ArrayLike) -> Array:
    """v / |v| for a 3-vector."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.sqrt(v @ v)


def rotate(v: ArrayLike, axis: ArrayLike, angle_deg: float) -> Array:
    """Rotate the 3-vector v about a unit axis by an angle in degrees (right-hand rule)."""
    v, k = np.asarray(v, dtype=np.float64), np.asarray(axis, dtype=np.float64)
    a = np.deg2rad(angle_deg)
    return v * np.cos(a) + cross3(k, v) * np.sin(a) + k * (k @ v) * (1 - np.cos(a))


def _cross(a: Array, b: Array) -> Array:
    """Row-wise cross product of (N, 3) arrays (np.cross is slow for small arrays)."""
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


def _thickness_axis(axis: Array, guess: Array) -> Array:
    """Unit vectors perpendicular to ``axis`` (N, 3), as close as possible to ``guess`` (N, 3)."""
    thick = guess - axis * np.sum(guess * axis, axis=1, keepdims=True)
    norm = np.sqrt(np.sum(thick * thick, axis=1))
    bad = norm < 1e-6 * np.maximum(1.0, np.sqrt(np.sum(guess * guess, axis=1)))
    if bad.any():
        fallback = np.where(np.abs(axis[bad, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
        thick[bad] = fallback - axis[bad] * np.sum(fallback * axis[bad], axis=1, keepdims=True)
        norm = np.sqrt(np.sum(thick * thick, axis=1))
    return thick / norm[:, None]


def tapered(a_ras: ArrayLike, b_ras: ArrayLike, radius_a: ArrayLike, radius_b: ArrayLike, *, aspect: ArrayLike = 1.0,
            thickness_dir: ArrayLike | None = None, cap: ArrayLike | None = None) -> Shapes:
    """Tapered limb or trunk segments from points a to points b (RAS mm); every argument may be batched.

    Args:
        a_ras, b_ras: (3,) or (N, 3) centres of the two ends.
        radius_a, radius_b: cross-section half-widths at the ends, mm.
        aspect: half-thickness / half-width of the cross-section (1 = round).
        thickness_dir: (3,) or (N, 3) direction of the cross-section's thickness (default anterior).
        cap: how far the rounded end of the larger radius sticks out beyond its end point, mm (default: the
            radius, i.e. hemispherical ends). Smaller values give blunt ends for stacked trunk segments.
    Returns:
        N primitives. Where one end ball would swallow the other, the smaller radius is raised just enough to keep
        a valid round cone; coincident ends give an ellipsoid.
    """
    a = np.asarray(a_ras, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(b_ras, dtype=np.float64).reshape(-1, 3)
    ra, rb, asp = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (radius_a, radius_b, aspect))
    n = max(len(a), len(b), len(ra), len(rb), len(asp))
    if np.any(np.minimum(ra, rb) <= 0) or np.any(asp <= 0):
        raise InputError(f"radii and aspect must be positive, got {ra}, {rb}, {asp}.")
    big = np.maximum(ra, rb)
    delta = b - a
    span = np.sqrt(np.sum(delta * delta, axis=1))
    degenerate = span < 1e-9
    axis = np.where(degenerate[:, None], [[0.0, 0.0, 1.0]], delta / np.where(degenerate, 1.0, span)[:, None])
    guess = np.asarray([0.0, 1.0, 0.0] if thickness_dir is None else thickness_dir, dtype=np.float64).reshape(-1, 3)
    thick = _thickness_axis(axis, guess + 0.0 * axis)
    axial = np.ones(1) if cap is None else np.asarray(cap, dtype=np.float64).reshape(-1) / big
    length = np.where(degenerate, 0.0, span / axial)
    small = np.maximum(np.minimum(ra, rb), big - 0.99 * length)
    new_a = np.broadcast_to(np.where(degenerate | (ra >= rb), big, small), (n,))
    new_b = np.broadcast_to(np.where(degenerate, big, np.where(ra >= rb, small, big)), (n,))
    axial = np.where(degenerate, 1.0, axial)
    m = np.empty((n, 3, 4))
    m[:, :, 0] = _cross(thick, axis) if len(thick) == n else _cross(np.broadcast_to(thick, (n, 3)), axis)
    m[:, :, 1] = thick * asp[:, None]
    m[:, :, 2] = axis * axial[:, None]
    m[:, :, 3] = a
    length = np.broadcast_to(length, (n,))
    return Shapes(m, length, new_a, new_b)


def ellipsoid(centre_ras: ArrayLike, semi_axes: ArrayLike, axes: ArrayLike | None = None) -> Shapes:
    """Ellipsoids; ``axes`` (3, 3) or (N, 3, 3), columns, orients the semi-axes (default: along R, A, S).

    Args:
        centre_ras: (3,) or (N, 3) centres, mm.
        semi_axes: (3,) or (N, 3) semi-axis lengths, mm.
    """
    c = np.atleast_2d(np.asarray(centre_ras, dtype=np.float64))
    semi = np.atleast_2d(np.asarray(semi_axes, dtype=np.float64))
    n = max(len(c), len(semi))
    r = np.broadcast_to(np.eye(3) if axes is None else np.asarray(axes, dtype=np.float64), (n, 3, 3))
    m = np.concatenate([r * np.broadcast_to(semi, (n, 3))[:, None, :], np.broadcast_to(c, (n, 3))[:, :, None]], axis=2)
    return Shapes(m, np.zeros(n), np.ones(n), np.ones(n))


def sphere(centre_ras: ArrayLike, radius: float) -> Shapes:
    """A ball of ``radius`` mm."""
    return ellipsoid(centre_ras, [radius, radius, radius])
