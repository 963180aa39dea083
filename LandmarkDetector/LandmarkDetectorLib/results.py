"""A detection as a table for people: landmark, confidence and position, with the rows to check marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .markups import PointList
from .pipeline import Landmarks
from .preview import LOW_CONFIDENCE

RowLevel = Literal["found", "low", "not_found", "placed"]


@dataclass(frozen=True)
class ResultRow:
    """One landmark of a detection, as its point list holds it now.

    Attributes:
        name: landmark name.
        confidence: the network's in-view probability.
        position_ras: world RAS in mm; None while the point is unplaced.
        level: "found"; "low" (found, confidence below LOW_CONFIDENCE); "not_found" (unplaced point);
            "placed" (not found by the network, placed by hand since).
    """

    name: str
    confidence: float
    position_ras: tuple[float, float, float] | None
    level: RowLevel

    def cells(self) -> list[str]:
        """Landmark, confidence (3 decimals), R, A, S (mm, 1 decimal; empty while unplaced)."""
        position = ["", "", ""] if self.position_ras is None else [f"{value:.1f}" for value in self.position_ras]
        return [self.name, f"{self.confidence:.3f}", *position]


def result_rows(landmarks: Landmarks, points: PointList) -> list[ResultRow]:
    """The rows of a detection's table, one per landmark that ``points`` still holds.

    Args:
        landmarks: the detection.
        points: its point list as it is now, in the detection's order (the user may have moved, placed or
            removed points since); points in "preview" status count as unplaced.
    Returns:
        Rows in landmark order, at most one per point.
    """
    rows = []
    for name, confidence, found, point in zip(landmarks.names, landmarks.confidence, landmarks.in_view,
                                              points.points, strict=False):
        if point.status != "defined":
            rows.append(ResultRow(name, float(confidence), None, "not_found"))
            continue
        level: RowLevel = "placed" if not found else "low" if confidence < LOW_CONFIDENCE else "found"
        rows.append(ResultRow(name, float(confidence), point.position_ras, level))
    return rows
