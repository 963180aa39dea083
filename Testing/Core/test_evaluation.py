"""``landmark-detector evaluate``: hand-made cases with known errors, mixed formats, mismatched names, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkDetectorLib.cli import main
from LandmarkDetectorLib.errors import InputError
from LandmarkDetectorLib.evaluation import compare_cases, ranked_cases, statistics
from LandmarkDetectorLib.markups import PointList, read_markups, write_markups
from LandmarkDetectorLib.synthetic.dataset import synthesize_dataset


def points(spec):
    """PointList from {label: (r, a, s) or None (undefined)}."""
    labels = list(spec)
    positions = [spec[k] if spec[k] is not None else (0.0, 0.0, 0.0) for k in labels]
    return PointList.from_arrays(labels, positions, defined=[spec[k] is not None for k in labels])


@pytest.fixture
def folders(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    write_markups(truth / "case1.mrk.json", points({"A": (0, 0, 0), "B": (10, 0, 0), "C": None}))
    write_markups(truth / "case2.csv", points({"A": (0, 0, 0), "B": (0, 0, 0), "C": (5, 5, 5)}))
    write_markups(truth / "case4.fcsv", points({"A": (0, 0, 0)}))  # no prediction
    write_markups(pred / "case1.fcsv", points({"A": (3, 4, 0), "B": (10, 0, 12), "C": (1, 1, 1)}))
    write_markups(pred / "case2.mrk.json", points({"A": (0, 0, 1), "B": None, "D": (0, 0, 0)}))  # C missing, D extra
    write_markups(pred / "case3.mrk.json", points({"A": (0, 0, 0)}))  # no reference
    return pred, truth


def test_known_errors_in_mixed_formats(folders):
    pred, truth = folders
    comparisons, warnings = compare_cases({"m1": pred}, truth)
    stats = statistics(comparisons)["m1"]
    a = stats["A"]
    assert a["n"] == 2
    assert a["mean_mm"] == pytest.approx(3.0) and a["std_mm"] == pytest.approx(np.sqrt(8.0))
    assert a["median_mm"] == pytest.approx(3.0) and a["p95_mm"] == pytest.approx(4.8) and a["max_mm"] == 5.0
    assert a["mean_in_plane_mm"] == pytest.approx(2.0) and a["mean_depth_mm"] == pytest.approx(2.0)
    assert a["within_5mm"] == 1.0 and a["not_found"] == 0 and a["wrongly_found"] == 0
    b = stats["B"]
    assert (b["n"], b["mean_mm"], b["not_found"], b["in_view"]) == (1, 12.0, 1, 2)
    assert b["within_10mm"] == 0.0 and b["within_20mm"] == 1.0
    assert b["mean_depth_mm"] == 0.0 and b["mean_in_plane_mm"] == 12.0  # superior-inferior is in the image plane
    c = stats["C"]
    assert (c["n"], c["wrongly_found"], c["out_of_view"], c["not_found"], c["in_view"]) == (0, 1, 1, 1, 1)
    everything = stats["all"]
    assert everything["n"] == 3 and everything["mean_mm"] == pytest.approx(6.0)
    assert everything["median_mm"] == 5.0 and everything["max_mm"] == 12.0
    assert (everything["not_found"], everything["wrongly_found"]) == (2, 1)
    text = "\n".join(warnings)
    for fragment in ("case3.mrk.json has no reference", "no prediction for 1 reference cases (case4)",
                     "predicted landmark 'D' is not in the reference", "no predicted landmark 'C'"):
        assert fragment in text
    assert [case for case, _ in ranked_cases(comparisons, "m1")] == ["case1", "case2"]
    offsets = {(c.case, c.landmark): c.offset_ras_mm for c in comparisons}
    assert offsets[("case1", "A")] == (3.0, 4.0, 0.0) and offsets[("case2", "A")] == (0.0, 0.0, 1.0)  # signed, RAS
    assert offsets[("case1", "B")] == (0.0, 0.0, 12.0)
    assert all(np.isnan(offsets[key]).all() for key in (("case1", "C"), ("case2", "B"), ("case2", "C")))


def test_no_common_case_is_an_error(tmp_path, folders):
    _, truth = folders
    other = tmp_path / "other"
    other.mkdir()
    write_markups(other / "unrelated.mrk.json", points({"A": (0, 0, 0)}))
    with pytest.raises(InputError, match="no case names in common"):
        compare_cases({"x": other}, truth)


def test_two_files_for_one_case_are_refused(folders):
    pred, truth = folders
    write_markups(pred / "case1.csv", points({"A": (0, 0, 0)}))
    with pytest.raises(InputError, match="both case 'case1'"):
        compare_cases({"x": pred}, truth)


def test_evaluate_command_writes_report_and_plots(tmp_path, folders, capsys):
    pred, truth = folders
    second = tmp_path / "second"
    second.mkdir()
    write_markups(second / "case1.mrk.json", points({"A": (0, 0, 2), "B": (10, 0, 0), "C": None}))
    out = tmp_path / "report"
    assert main(["evaluate", "--pred", str(pred), str(second), "--truth", str(truth), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pred: 3 landmarks, mean 6.0 mm" in printed and "second: 2 landmarks, mean 1.0 mm" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["statistics"]["pred"]["all"]["mean_mm"] == pytest.approx(6.0)
    assert len(report["comparisons"]) == 6 + 3 and report["warnings"]
    markdown = (out / "report.md").read_text()
    assert "## pred" in markdown and "## second" in markdown and "## Warnings" in markdown
    for name in ("errors_by_landmark.png", "error_cdf.png"):
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(out / name))).std() > 5
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out)]) == 2  # no overwrite
    assert "already exists" in capsys.readouterr().err


def test_evaluate_draws_the_worst_cases_over_their_volumes(tmp_path):
    cases = tmp_path / "cases"
    synthesize_dataset("hand", 2, 11, cases)
    pred = tmp_path / "pred"
    pred.mkdir()
    for index, shift in enumerate((2.0, 9.0)):
        truth = read_markups(cases / f"hand_s11_{index:04d}.mrk.json")
        write_markups(pred / f"hand_s11_{index:04d}.mrk.json",
                      PointList.from_arrays(truth.labels, truth.positions_ras() + [shift, 0, 0]))
    out = tmp_path / "report"
    assert main(["evaluate", "--pred", str(pred), "--truth", str(cases), "--out", str(out), "--volumes",
                 str(cases)]) == 0
    stats = json.loads((out / "report.json").read_text())["statistics"]["pred"]["all"]
    assert stats["mean_mm"] == pytest.approx(5.5) and stats["max_mm"] == pytest.approx(9.0)
    assert sitk.ReadImage(str(out / "worst_cases.png")).GetSize()[0] > 400
