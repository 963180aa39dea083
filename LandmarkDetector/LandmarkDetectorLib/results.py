"""A detection as a table for people: landmark, confidence and position, with the rows to check marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .markups import PointList
from .pipeline import Landmarks

RowLevel = Literal["found", "low", "not_found", "placed"]


@dataclass(frozen=True)
class ResultRow:
    """One landmark of a detection, as its point list holds it now.

    Attributes:
        name: landmark name.
        confidence: the network's in-view probability.
        position_ras: world RAS in mm; None while the point is unplaced.
        level: "found"; "low" (found, confidence below ``Landmarks.low_confidence_below``); "not_found" (unplaced
            point); "placed" (not found by the network, placed by hand since).
        point_index: the index of its point in the point list.
    """

    name: str
    confidence: float
    position_ras: tuple[float, float, float] | None
    level: RowLevel
    point_index: int = 0

    def cells(self) -> list[str]:
        """Landmark, confidence (3 decimals), R, A, S (mm, 1 decimal; empty while unplaced)."""
        position = ["", "", ""] if self.position_ras is None else [f"{value:.1f}" for value in self.position_ras]
        return [self.name, f"{self.confidence:.3f}", *position]


def result_rows(landmarks: Landmarks, points: PointList) -> list[ResultRow]:
    """The rows of a detection's table, one per landmark that ``points`` still holds, matched by label.

    Args:
        landmarks: the detection.
        points: its point list as it is now (the user may have moved, placed, reordered or removed points since);
            points in "preview" status count as unplaced.
    Returns:
        Rows in landmark order, one per landmark whose label is in ``points`` (its first point of that label).
    """
    indices: dict[str, int] = {}
    for index, point in enumerate(points.points):
        indices.setdefault(point.label, index)
    rows = []
    for name, confidence, found, low_below in zip(landmarks.names, landmarks.confidence, landmarks.found,
                                                  landmarks.low_confidence_below, strict=True):
        index = indices.get(name)
        if index is None:
            continue
        point = points.points[index]
        if point.status != "defined":
            rows.append(ResultRow(name, float(confidence), None, "not_found", index))
            continue
        level: RowLevel = "placed" if not found else "low" if confidence < low_below else "found"
        rows.append(ResultRow(name, float(confidence), point.position_ras, level, index))
    return rows
