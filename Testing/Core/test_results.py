"""The results table of a detection, and the self-test's hand phantom."""

from __future__ import annotations

import numpy as np

from LandmarkDetectorLib.markups import MarkupsPoint, PointList
from LandmarkDetectorLib.phantom import HAND_TIPS_RAS, hand_phantom
from LandmarkDetectorLib.pipeline import Landmarks
from LandmarkDetectorLib.results import ResultRow, result_rows


def test_rows_follow_the_point_list_as_it_is_now():
    landmarks = Landmarks(names=("A", "B", "C", "D"), points_ras=np.zeros((4, 3)),
                          confidence=np.array([0.95, 0.6, 0.2, 0.1]), found=np.array([True, True, False, False]))
    points = PointList((MarkupsPoint("A", (1.0, -2.25, 3.0)), MarkupsPoint("B", (4.0, 5.0, 6.0)),
                        MarkupsPoint("C", (0.0, 0.0, 0.0), status="undefined"),
                        MarkupsPoint("D", (7.0, 8.0, 9.0))))  # D: not found, then placed by the user
    rows = result_rows(landmarks, points)
    assert [row.level for row in rows] == ["found", "low", "not_found", "placed"]
    assert rows[0] == ResultRow("A", 0.95, (1.0, -2.25, 3.0), "found")
    assert rows[0].cells() == ["A", "0.950", "1.0", "-2.2", "3.0"]
    assert rows[2].cells() == ["C", "0.200", "", "", ""]
    assert [row.name for row in result_rows(landmarks, PointList(points.points[:2]))] == ["A", "B"]  # points removed


def test_hand_phantom_has_tissue_at_each_fingertip_and_none_beyond():
    voxels, ijk_to_ras, tips = hand_phantom()
    assert voxels.shape == (140, 70, 150) and list(tips) == list(HAND_TIPS_RAS)
    ras_to_ijk = np.linalg.inv(ijk_to_ras)
    for name, tip in tips.items():
        direction = tip - np.array([-10.0, 0.0, 60.0])
        direction /= np.linalg.norm(direction)
        for distance, value in ((-3.0, 700), (4.0, 20)):  # inside the round end, then just beyond it
            i, j, k = np.rint(ras_to_ijk @ [*(tip + distance * direction), 1.0])[:3].astype(int)
            assert voxels[k, j, i] == value, (name, distance)
