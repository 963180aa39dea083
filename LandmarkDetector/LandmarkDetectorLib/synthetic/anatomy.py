"""The result of the body and hand builders: a skin surface, tissues inside it, and exact landmarks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .shapes import Shapes, concat, ellipsoid, tapered

BODY_LANDMARKS = ("HeadTop", "ShoulderR", "ShoulderL", "MiddleFingerTipR", "MiddleFingerTipL", "KneeR", "KneeL",
                  "BigToeR", "BigToeL")
"""Whole-body landmark names (DESIGN §2), in ground-truth file order."""

HAND_LANDMARKS = ("ThumbTip", "IndexTip", "MiddleTip", "RingTip", "LittleTip")
"""Left-hand landmark names (DESIGN §2), in ground-truth file order."""


@dataclass(frozen=True)
class Tissue:
    """A region painted with one tissue: the points deeper than ``inset_mm[n]`` inside some primitive n.

    Attributes:
        name: tissue name, e.g. "fat", "muscle", "lung", "cortical", "cancellous", "brain", "marrow".
        shapes: primitives whose union (after inset) is the region, RAS mm.
        inset_mm: (N,) how far inside each primitive's surface the region starts (0 = the whole primitive).
    """

    name: str
    shapes: Shapes
    inset_mm: NDArray[np.float64]


@dataclass(frozen=True)
class Anatomy:
    """A synthetic body or left hand in RAS millimetres.

    Attributes:
        kind: "body" or "hand".
        skin: primitives whose union is the outer surface (what silhouettes and depth images show).
        tissues: regions painted in order, later ones over earlier ones (the first is usually the skin itself).
        landmarks_ras: landmark name -> (3,) RAS mm position, ordered as BODY_LANDMARKS or HAND_LANDMARKS.
    """

    kind: str
    skin: Shapes
    tissues: tuple[Tissue, ...]
    landmarks_ras: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    @property
    def landmark_names(self) -> tuple[str, ...]:
        return tuple(self.landmarks_ras)

    def landmark_array(self) -> NDArray[np.float64]:
        """(L, 3) landmark positions in RAS mm, in ``landmark_names`` order."""
        return np.array([self.landmarks_ras[name] for name in self.landmarks_ras], dtype=np.float64)

    def transformed(self, matrix: NDArray[np.float64]) -> Anatomy:
        """The anatomy moved by a 4x4 RAS -> RAS rigid map (e.g. prone rotation, placement in a scanner)."""
        m = np.asarray(matrix, dtype=np.float64)
        return Anatomy(self.kind, self.skin.transformed(m),
                       tuple(Tissue(t.name, t.shapes.transformed(m), t.inset_mm) for t in self.tissues),
                       {k: m[:3, :3] @ v + m[:3, 3] for k, v in self.landmarks_ras.items()})


class PartList:
    """Records primitives, each with a number (fat thickness, inset), and builds them in one vectorized call.

    The layout of the result depends only on the order of the calls, so builders that make the same calls give
    anatomies whose primitive n plays the same role (needed for batched rendering).
    """

    def __init__(self) -> None:
        self._tapered: list[tuple] = []
        self._ellipsoids: list[tuple] = []
        self._shapes: list[tuple[Shapes, NDArray[np.float64]]] = []
        self._built: tuple[Shapes, NDArray[np.float64]] | None = None

    def tapered(self, a: ArrayLike, b: ArrayLike, radius_a: float, radius_b: float, *, aspect: float = 1.0,
                thickness_dir: ArrayLike = (0.0, 1.0, 0.0), cap: float | None = None, value: float = 0.0) -> None:
        """Record one ``shapes.tapered`` segment (same arguments)."""
        self._tapered.append((a, b, radius_a, radius_b, aspect, thickness_dir,
                              max(radius_a, radius_b) if cap is None else cap, value))
        self._built = None

    def ellipsoid(self, centre: ArrayLike, semi_axes: ArrayLike, axes: ArrayLike | None = None,
                  value: float = 0.0) -> None:
        """Record one ``shapes.ellipsoid``."""
        self._ellipsoids.append((centre, semi_axes, np.eye(3) if axes is None else axes, value))
        self._built = None

    def sphere(self, centre: ArrayLike, radius: float, value: float = 0.0) -> None:
        self.ellipsoid(centre, (radius, radius, radius), value=value)

    def add(self, shapes: Shapes, value: ArrayLike = 0.0) -> None:
        """Record ready-made primitives with their value (one for all, or one each)."""
        self._shapes.append((shapes, np.broadcast_to(np.asarray(value, dtype=np.float64), (len(shapes),))))
        self._built = None

    def build(self) -> tuple[Shapes, NDArray[np.float64]]:
        """All primitives (tapered, then ellipsoids, then ready-made, each in call order) and their values."""
        if self._built is None:
            parts, values = [], []
            if self._tapered:
                cols = list(zip(*self._tapered, strict=True))
                parts.append(tapered(np.array(cols[0], dtype=np.float64), np.array(cols[1], dtype=np.float64),
                                     np.array(cols[2]), np.array(cols[3]), aspect=np.array(cols[4]),
                                     thickness_dir=np.array(cols[5], dtype=np.float64), cap=np.array(cols[6])))
                values.append(np.array(cols[7], dtype=np.float64))
            if self._ellipsoids:
                cols = list(zip(*self._ellipsoids, strict=True))
                parts.append(ellipsoid(np.array(cols[0], dtype=np.float64), np.array(cols[1], dtype=np.float64),
                                       np.array(cols[2], dtype=np.float64)))
                values.append(np.array(cols[3], dtype=np.float64))
            for shapes, value in self._shapes:
                parts.append(shapes)
                values.append(value)
            self._built = (concat(parts), np.concatenate(values))
        return self._built

    def union(self) -> Shapes:
        return self.build()[0]

    def tissue(self, name: str, extra_inset_mm: float = 0.0) -> Tissue:
        """Tissue from the recorded primitives, inset by each one's value plus ``extra_inset_mm``."""
        shapes, values = self.build()
        return Tissue(name, shapes, values + extra_inset_mm)


class NullPartList(PartList):
    """A PartList that ignores everything: lets a builder skip inner structures at no cost."""

    def tapered(self, *args: object, **kwargs: object) -> None:
        pass

    def ellipsoid(self, *args: object, **kwargs: object) -> None:
        pass

    def add(self, *args: object, **kwargs: object) -> None:
        pass
