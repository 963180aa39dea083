"""Property tests of the markups writers and readers, and a short run of the fuzzer (scripts/fuzz_markups.py).

test_markups.py checks round trips of printable text; here any text goes: line breaks, control characters,
separators, quotes and unicode in labels, descriptions and names, and any finite coordinate.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from LandmarkDetectorLib.errors import FileFormatError
from LandmarkDetectorLib.markups import MarkupsPoint, PointList, read_markups, write_markups

LINE_BREAKS = "\r\n"
# Any character UTF-8 can hold (no lone surrogates), with the ones the formats treat specially made frequent.
text = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from(',;"\'\t#\\ \r\n\x00\x0b\x85\u2028'),
               max_size=20)
coordinate = st.floats(allow_nan=False, allow_infinity=False)
point = st.builds(MarkupsPoint, text, st.tuples(coordinate, coordinate, coordinate), text,
                  st.sampled_from(["defined", "preview", "undefined"]))
point_list = st.builds(PointList, st.lists(point, max_size=5).map(tuple), text)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def has_line_break(points: PointList) -> bool:
    return any(c in LINE_BREAKS for p in points.points for c in p.label + p.description)


@pytest.mark.parametrize("suffix", [".mrk.json", ".json"])
@SETTINGS
@given(points=point_list)
def test_json_round_trip_keeps_any_text_status_and_coordinate(tmp_path, suffix, points):
    path = tmp_path / f"points{suffix}"
    write_markups(path, points, overwrite=True)
    again = read_markups(path)
    assert again.points == points.points
    assert again.name == (points.name or "points")  # no stored name: the file's name, as in Slicer


@pytest.mark.parametrize("suffix", [".fcsv", ".csv", ".tsv"])
@SETTINGS
@given(points=point_list)
def test_csv_formats_round_trip_or_refuse_line_breaks(tmp_path, suffix, points):
    """Slicer's .fcsv and table readers split records at line breaks: such text is refused, nothing is written."""
    path = tmp_path / f"points{suffix}"
    path.unlink(missing_ok=True)
    if has_line_break(points):
        with pytest.raises(FileFormatError, match="line break"):
            write_markups(path, points)
        assert list(tmp_path.iterdir()) == []
        return
    write_markups(path, points)
    again = read_markups(path)
    tables = suffix != ".fcsv"  # a table has no "preview" (Slicer writes it as not defined)
    expected = tuple(MarkupsPoint(p.label, p.position_ras, p.description,
                                  "undefined" if tables and p.status == "preview" else p.status)
                     for p in points.points)
    assert again.points == expected
    assert again.name == "points"


def load_fuzzer():
    path = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_markups.py"
    spec = importlib.util.spec_from_file_location("fuzz_markups", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzzed_files_read_or_fail_with_file_format_error():
    """2,000 mutated files (seed 7; Slicer's examples among the seeds when ../shared is there): no exception but
    FileFormatError."""
    fuzzer = load_fuzzer()
    outcomes, failures = fuzzer.fuzz(2000, seed=7)
    assert failures == {}, failures
    assert set(outcomes) == {"read", "FileFormatError"} and sum(outcomes.values()) == 2000
