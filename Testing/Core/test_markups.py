"""Markups files without Slicer: round trips, Slicer's schema, real Slicer-written files, the AFIDs, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from LandmarkDetectorLib.errors import FileFormatError, InputError
from LandmarkDetectorLib.markups import MarkupsPoint, PointList, read_markups, write_markups

SUFFIXES = [".mrk.json", ".json", ".fcsv", ".csv", ".tsv"]
TRICKY_LABEL = 'a,b "quoted" é ü 漢字'
SAMPLE = PointList((
    MarkupsPoint("L1", (1.0, 2.0, 3.0)),
    MarkupsPoint(TRICKY_LABEL, (-4.5, 5.25, 6.123456789012345), 'desc, with "comma"'),
    MarkupsPoint("not placed", (7.0, -8.0, 9.5), "kept position", "undefined"),
    MarkupsPoint("odd values", (1e-300, -123456.789, 0.1 + 0.2)),
), name="My points")
PREVIEW = MarkupsPoint("preview", (10.0, -20.0, 30.25), status="preview")


@pytest.fixture
def examples(shared_dir: Path) -> Path:
    return shared_dir / "formats" / "examples"


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


# ---------------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_keeps_labels_descriptions_statuses_and_exact_positions(tmp_path, suffix):
    path = tmp_path / f"points{suffix}"
    write_markups(path, SAMPLE)
    result = read_markups(path)
    assert result.points == SAMPLE.points  # exact floats, -0.0 == 0.0
    assert result.name == ("My points" if suffix.endswith("json") else "points")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_preview_status_is_kept_except_in_table_files(tmp_path, suffix):
    path = tmp_path / f"preview{suffix}"
    write_markups(path, PointList((PREVIEW,)))
    (point,) = read_markups(path).points
    assert point.position_ras == PREVIEW.position_ras
    # Slicer's table format only has a 0/1 "defined" column; Slicer also exports preview points as 0.
    assert point.status == ("undefined" if suffix in (".csv", ".tsv") else "preview")


def test_empty_point_list_round_trips(tmp_path):
    for suffix in SUFFIXES:
        write_markups(tmp_path / f"empty{suffix}", PointList(()))
        assert read_markups(tmp_path / f"empty{suffix}").points == ()


text_strategy = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(',"\t#'), max_size=12)
point_strategy = st.builds(
    MarkupsPoint, text_strategy,
    st.tuples(*[st.floats(allow_nan=False, allow_infinity=False)] * 3), text_strategy,
    st.sampled_from(["defined", "undefined"]))


@pytest.mark.parametrize("suffix", SUFFIXES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(point_strategy, max_size=4))
def test_round_trip_any_text_and_float(tmp_path, suffix, points):
    path = tmp_path / f"any{suffix}"
    write_markups(path, PointList(tuple(points)), overwrite=True)
    assert read_markups(path).points == tuple(points)


# ------------------------------------------------------------------------------------- what the files look like

@pytest.mark.parametrize("version", ["1.0.3", "1.0.4"])
def test_written_json_validates_against_slicer_schema(tmp_path, shared_dir, version):
    schema = json.loads((shared_dir / "formats" / f"markups-schema-v{version}.json").read_text(encoding="utf-8"))
    path = tmp_path / "points.mrk.json"
    write_markups(path, PointList(SAMPLE.points + (PREVIEW,), name="My points"))
    document = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema).validate(document)
    # The validator is not vacuous: what Slicer itself writes for undefined points breaks the schema.
    document["markups"][0]["controlPoints"][2]["position"] = ""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(document)


def test_written_json_is_lps_like_slicer(tmp_path):
    path = tmp_path / "points.mrk.json"
    write_markups(path, SAMPLE)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["@schema"] == ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                                   "Resources/Schema/markups-schema-v1.0.3.json#")
    (markup,) = document["markups"]
    assert (markup["type"], markup["name"], markup["coordinateSystem"], markup["coordinateUnits"]) == (
        "Fiducial", "My points", "LPS", "mm")
    assert markup["lastUsedControlPointNumber"] == 4
    first, second, third, _ = markup["controlPoints"]
    assert first == {"id": "1", "label": "L1", "description": "", "associatedNodeID": "", "position": [-1.0, -2.0, 3.0],
                     "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0], "selected": True,
                     "locked": False, "visibility": True, "positionStatus": "defined"}
    assert (second["label"], second["position"]) == (TRICKY_LABEL, [4.5, -5.25, 6.123456789012345])
    assert (third["positionStatus"], third["position"]) == ("undefined", [-7.0, 8.0, 9.5])
    assert "é ü 漢字" in path.read_text(encoding="utf-8")  # UTF-8, not \u escapes


def test_written_fcsv_matches_slicer_layout(tmp_path, examples):
    slicer_lines = (examples / "written-by-slicer-core-5.13.fcsv").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "points.fcsv"
    write_markups(path, PointList((MarkupsPoint("L1", (1.0, 2.0, 3.0)), MarkupsPoint("L2", (-4.5, 5.25, 6.0), "desc"))))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# Markups fiducial file version = ")
    assert lines[1:3] == slicer_lines[1:3] == [
        "# CoordinateSystem = LPS", "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"]
    assert lines[3] == "1,-1,-2,3,0,0,0,1,1,1,0,L1,,,2,0"  # Slicer's example has L1 locked (lock column = 1)
    assert lines[4] == slicer_lines[4] == "2,4.5,-5.25,6,0,0,0,1,1,1,0,L2,desc,,2,0"


def test_written_fcsv_quotes_and_status_codes(tmp_path):
    path = tmp_path / "points.fcsv"
    write_markups(path, PointList(SAMPLE.points[1:3] + (PREVIEW,)))
    rows = path.read_text(encoding="utf-8").splitlines()[3:]
    assert rows == ['1,4.5,-5.25,6.123456789012345,0,0,0,1,1,1,0,'
                    '"a,b ""quoted"" é ü 漢字","desc, with ""comma""",,2,0',
                    "2,-7,8,9.5,0,0,0,1,1,1,0,not placed,kept position,,0,0",
                    "3,-10,20,30.25,0,0,0,1,1,1,0,preview,,,1,0"]


@pytest.mark.parametrize(("suffix", "separator"), [(".csv", ","), (".tsv", "\t")])
def test_written_table_has_slicer_columns(tmp_path, suffix, separator):
    path = tmp_path / f"points{suffix}"
    write_markups(path, PointList(SAMPLE.points[:3]))
    lines = path.read_text(encoding="utf-8").splitlines()
    header = ["label", "l", "p", "s", "defined", "selected", "visible", "locked", "description"]
    assert lines[0] == separator.join(header)
    assert lines[1] == separator.join(["L1", "-1", "-2", "3", "1", "1", "1", "0", ""])
    assert lines[3] == separator.join(["not placed", "-7", "8", "9.5", "0", "1", "1", "0", "kept position"])
    if separator == ",":
        assert lines[2] == '"a,b ""quoted"" é ü 漢字",4.5,-5.25,6.123456789012345,1,1,1,0,"desc, with ""comma"""'


# ------------------------------------------------------------------------------------------ real files

def test_read_docs_example_converts_lps_to_ras(examples):
    point_list = read_markups(examples / "docs-example.mrk.json")
    assert point_list.name == "docs-example"
    assert point_list.labels == ["F-1", "F-2", "F-3"]
    assert all(point.status == "defined" and point.description == "" for point in point_list.points)
    np.testing.assert_allclose(point_list.positions_ras(), [[53.388409961685827, 73.33572796934868, 0.0],
                                                           [-49.8682950191571, 88.58955938697324, 0.0],
                                                           [25.22749042145594, -59.255268199233729, 0.0]],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["written-by-slicer-core-5.13.mrk.json", "written-by-slicer-core-5.13.fcsv"])
def test_read_files_written_by_slicer(examples, name):
    point_list = read_markups(examples / name)
    assert point_list.points == (MarkupsPoint("L1", (1.0, 2.0, 3.0)), MarkupsPoint("L2", (-4.5, 5.25, 6.0), "desc"))


def test_read_legacy_fcsv_with_numeric_ras_coordinate_system(examples):
    point_list = read_markups(examples / "L1.fcsv")
    assert point_list.labels == ["L1-P1", "L1-P2"]
    np.testing.assert_array_equal(point_list.positions_ras(), [[43.3769, 23.1343, 0.0], [49.8834, -4.33769, 0.0]])


def test_read_afids_ground_truth(shared_dir):
    folder = shared_dir / "data" / "afids-mni152-t1w"
    truth = read_markups(folder / "tpl-MNI152NLin2009cAsym_res-01_desc-groundtruth_afids.fcsv")
    rater = read_markups(folder / "tpl-MNI152NLin2009cAsym_res-01_T1w.fcsv")  # ends with a blank line
    for point_list in (truth, rater):
        assert point_list.labels == [str(number) for number in range(1, 33)]
        assert point_list.points[0].description == "AC"
        assert point_list.points[31].description == "L olfactory sulcal fundus"
    # CoordinateSystem = 0 (RAS): the values are taken as they are in the file.
    assert truth.get("1").position_ras == (-0.204861407692308, 2.72288076923077, -4.88105282051282)
    assert truth.get("32").position_ras == (-13.3650815789474, 17.0294973684211, -13.0638105263158)
    assert rater.get("31").position_ras == (12.108500000000001, 17.02725, -12.94)
    # Two placements of the same landmarks: a few tenths of a mm apart, never centimetres.
    distances = np.linalg.norm(truth.positions_ras() - rater.positions_ras(), axis=1)
    assert 0.0 < distances.mean() < 1.0 and distances.max() < 3.0


# ------------------------------------------------------------------------------------- reader variants

def test_json_reader_variants(tmp_path, caplog):
    document = {"@schema": "https://raw.githubusercontent.com/Slicer/Slicer/main/whatever/markups-schema-v1.0.4.json#",
                "markups": [
                    {"type": "Line", "controlPoints": [{"label": "line", "position": [1, 1, 1]}]},
                    {"type": "Fiducial", "name": "ras list", "coordinateSystem": "RAS",
                     "coordinateUnits": ["um", "UCUM", "micrometer"], "controlPoints": [
                         {"label": "a", "position": [1000, -2000, 3500]},
                         {"label": "slicer undefined", "position": "", "positionStatus": "undefined"},
                         {"label": "slicer preview", "position": "", "positionStatus": "preview"},
                         {"label": "no position"},
                         {"label": "skipped", "position": [1, 2, 3], "positionStatus": "missing"},
                         {}]}]}
    path = write_text(tmp_path / "variants.json", json.dumps(document))
    with caplog.at_level(logging.WARNING):
        point_list = read_markups(path)
    assert point_list.name == "ras list"
    assert point_list.points == (MarkupsPoint("a", (1.0, -2.0, 3.5)),
                                 MarkupsPoint("slicer undefined", (0.0, 0.0, 0.0), status="undefined"),
                                 MarkupsPoint("slicer preview", (0.0, 0.0, 0.0), status="preview"),
                                 MarkupsPoint("no position", (0.0, 0.0, 0.0), status="undefined"),
                                 MarkupsPoint("skipped", (0.001, 0.002, 0.003), status="undefined"),
                                 MarkupsPoint("", (0.0, 0.0, 0.0), status="undefined"))
    assert "no position" in caplog.text and "2 markups" in caplog.text


def test_json_reader_takes_points_of_other_markup_types(tmp_path, caplog):
    document = {"markups": [{"type": "Curve", "controlPoints": [{"label": "c", "position": [1, 2, 3]}]}]}
    with caplog.at_level(logging.WARNING):
        point_list = read_markups(write_text(tmp_path / "curve.mrk.json", json.dumps(document)))
    assert point_list.points == (MarkupsPoint("c", (-1.0, -2.0, 3.0)),)  # LPS is the default
    assert "'Curve'" in caplog.text


@pytest.mark.parametrize(("header", "expected"), [
    ("# CoordinateSystem = RAS\n", (1.5, -2.0, 3.0)),
    ("# CoordinateSystem = 0\n", (1.5, -2.0, 3.0)),
    ("# CoordinateSystem = LPS\n", (-1.5, 2.0, 3.0)),
    ("# CoordinateSystem = 1\n", (-1.5, 2.0, 3.0)),
    ("", (-1.5, 2.0, 3.0)),  # no line: Slicer assumes LPS
])
def test_fcsv_coordinate_systems(tmp_path, header, expected):
    text = f"# Markups fiducial file version = 5.6\n{header}1,1.5,-2,3,0,0,0,1,1,1,0,P,,\n"
    assert read_markups(write_text(tmp_path / "p.fcsv", text)).points[0].position_ras == expected


def test_fcsv_reader_variants(tmp_path):
    text = ("\ufeff# Markups fiducial file version = 4.13\r\n# CoordinateSystem = RAS\r\n"
            "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\r\n\r\n"
            'a,1,2,3,0,0,0,1,1,1,0,"x, ""y""","d, e",vtkMRMLScalarVolumeNode1,2,0,extra,columns\r\n'
            "b,4,5,6,0,0,0,1,1,1,0,short\r\n"
            "c,7,8,9\r\n"
            "d, 1.5e1 ,-0.0,+2,0,0,0,1,1,1,0,u,,,0,0\r\n"
            "e,1,1,1,0,0,0,1,1,1,0,p,,,1\r\n   \r\n")
    assert read_markups(write_text(tmp_path / "variants.fcsv", text)).points == (
        MarkupsPoint('x, "y"', (1.0, 2.0, 3.0), "d, e"), MarkupsPoint("short", (4.0, 5.0, 6.0)),
        MarkupsPoint("", (7.0, 8.0, 9.0)), MarkupsPoint("u", (15.0, 0.0, 2.0), status="undefined"),
        MarkupsPoint("p", (1.0, 1.0, 1.0), status="preview"))


def test_table_reader_variants(tmp_path):
    ras = write_text(tmp_path / "ras.csv", 'Description,extra,Label,R,A,S\n"c, d",x,"a ""b""",1,2,3\n\n,,,4,5,6\n')
    assert read_markups(ras).points == (MarkupsPoint('a "b"', (1.0, 2.0, 3.0), "c, d"), MarkupsPoint("", (4, 5, 6)))
    lps = write_text(tmp_path / "lps.tsv", "label\tl\tp\ts\tdefined\nA, B\t1\t2\t3\t1\nU\t4\t5\t6\t0\nshort\t7\t8\t9\n")
    assert read_markups(lps).points == (MarkupsPoint("A, B", (-1.0, -2.0, 3.0)),
                                        MarkupsPoint("U", (-4.0, -5.0, 6.0), status="undefined"),
                                        MarkupsPoint("short", (-7.0, -8.0, 9.0)))


# ---------------------------------------------------------------------------------------------- errors

def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.mrk.json"
    with pytest.raises(FileFormatError, match="nowhere.mrk.json does not exist"):
        read_markups(path)


@pytest.mark.parametrize(("text", "message"), [
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "a", "pos', "not valid JSON"),
    ("[1, 2]", "not a Slicer markups file"),
    ('{"markups": 5}', "not a Slicer markups file"),
    ('{"markups": [{"type": "ROI"}]}', "no point list"),
    ('{"markups": [{"type": "Fiducial", "coordinateSystem": "XYZ"}]}', "coordinateSystem"),
    ('{"markups": [{"type": "Fiducial", "coordinateUnits": "inch"}]}', "coordinateUnits"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": {}}]}', "must be a list"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [5]}]}', "control point 1: expected an object"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"position": [1, 2]}]}]}', "3 finite numbers"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"position": ["1", 2, 3]}]}]}', "3 finite numbers"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"position": [NaN, 2, 3]}]}]}', "3 finite numbers"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"position": [1, Infinity, 3]}]}]}', "3 finite numbers"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"position": [true, 2, 3]}]}]}', "3 finite numbers"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"label": 3}]}]}', "must be strings"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"positionStatus": "placed"}]}]}', "positionStatus"),
])
def test_corrupt_json(tmp_path, text, message):
    path = write_text(tmp_path / "bad.mrk.json", text)
    with pytest.raises(FileFormatError, match=message) as info:
        read_markups(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("row", "message"), [
    ("2,4.5,-5", "line 5: expected id,x,y,z"),  # truncated row
    ("2,4.5,L2,desc", "line 5: column y must be a finite number, got 'L2'"),
    ("2,4.5,-5.25,", "line 5: column z must be a finite number, got ''"),
    ("2,nan,-5.25,6", "column x must be a finite number"),
    ("2,4.5,-5.25,6,0,0,0,1,1,1,0,L2,,,defined,0", "positionStatus"),
])
def test_corrupt_fcsv(tmp_path, row, message):
    text = ("# Markups fiducial file version = 5.6\n# CoordinateSystem = LPS\n# columns = id,x,y,z\n"
            f"1,1,2,3,0,0,0,1,1,1,0,L1,,\n{row}\n")
    with pytest.raises(FileFormatError, match=message):
        read_markups(write_text(tmp_path / "bad.fcsv", text))


def test_fcsv_with_unknown_coordinate_system(tmp_path):
    with pytest.raises(FileFormatError, match="CoordinateSystem must be LPS, RAS, 0 or 1, got 'IJK'"):
        read_markups(write_text(tmp_path / "bad.fcsv", "# CoordinateSystem = IJK\n1,1,2,3\n"))


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("label,x,y,z\nA,1,2,3\n", "r,a,s or l,p,s columns"),
    ("label,r,a,s\nA,1,two,3\n", "line 2: column a must be a finite number"),
    ("label,r,a,s\nA,1,2\n", "line 2: column s must be a finite number"),
    ("label,r,a,s,defined\nA,1,2,3,yes\n", "defined must be 0 or 1"),
])
def test_corrupt_table(tmp_path, text, message):
    with pytest.raises(FileFormatError, match=message):
        read_markups(write_text(tmp_path / "bad.csv", text))


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.fcsv"
    path.write_bytes("1,1,2,3,0,0,0,1,1,1,0,Müller,,\n".encode("latin-1"))
    with pytest.raises(FileFormatError, match="not UTF-8"):
        read_markups(path)


@pytest.mark.parametrize("name", ["points.txt", "points.mrk", "points"])
def test_unknown_extension(tmp_path, name):
    with pytest.raises(FileFormatError, match=r"use one of \.mrk\.json, \.json, \.fcsv, \.csv, \.tsv"):
        write_markups(tmp_path / name, SAMPLE)
    with pytest.raises(FileFormatError, match="unsupported markups file extension"):
        read_markups(write_text(tmp_path / name, "{}"))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_existing_output_is_kept_unless_overwrite(tmp_path, suffix):
    path = write_text(tmp_path / f"points{suffix}", "precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_markups(path, SAMPLE)
    assert path.read_text(encoding="utf-8") == "precious"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    write_markups(path, SAMPLE, overwrite=True)
    assert read_markups(path).points == SAMPLE.points


@pytest.mark.parametrize("suffix", [".fcsv", ".csv", ".tsv"])
def test_line_breaks_are_refused_in_csv_formats(tmp_path, suffix):
    point_list = PointList((MarkupsPoint("two\nlines", (0.0, 0.0, 0.0)),))
    with pytest.raises(FileFormatError, match="line break.*write .mrk.json instead"):
        write_markups(tmp_path / f"p{suffix}", point_list)
    assert not list(tmp_path.iterdir())
    write_markups(tmp_path / "p.mrk.json", point_list)
    assert read_markups(tmp_path / "p.mrk.json").points == point_list.points


def test_double_quotes_in_table_files_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        write_markups(tmp_path / "p.csv", SAMPLE)
    assert "double quote" in caplog.text


def test_missing_output_folder(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        write_markups(tmp_path / "no" / "p.mrk.json", SAMPLE)


# ---------------------------------------------------------------------------------------------- the model

def test_point_validation():
    point = MarkupsPoint("a", np.array([1, 2, 3], dtype=np.float32))
    assert point.position_ras == (1.0, 2.0, 3.0) and type(point.position_ras[0]) is float
    assert MarkupsPoint("u", (np.nan, 0, 0), status="undefined").position_ras == (0.0, 0.0, 0.0)
    with pytest.raises(InputError, match="finite position"):
        MarkupsPoint("a", (np.nan, 0.0, 0.0))
    with pytest.raises(InputError, match="finite position"):
        MarkupsPoint("a", (np.inf, 0.0, 0.0), status="preview")
    with pytest.raises(InputError, match="status"):
        MarkupsPoint("a", (0.0, 0.0, 0.0), status="placed")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="3 numbers"):
        MarkupsPoint("a", (0.0, 0.0))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="must be str"):
        MarkupsPoint(1, (0.0, 0.0, 0.0))  # type: ignore[arg-type]


def test_point_list_conveniences():
    assert SAMPLE.labels == ["L1", TRICKY_LABEL, "not placed", "odd values"]
    positions = SAMPLE.positions_ras()
    assert positions.shape == (4, 3) and positions.dtype == np.float64
    np.testing.assert_array_equal(positions[:2], [[1.0, 2.0, 3.0], [-4.5, 5.25, 6.123456789012345]])
    assert np.isnan(positions[2]).all() and np.isfinite(positions[3]).all()
    assert SAMPLE.get("not placed") is SAMPLE.points[2] and SAMPLE.get("nope") is None
    assert PointList([]).positions_ras().shape == (0, 3)
    assert isinstance(PointList(list(SAMPLE.points)).points, tuple)


def test_from_arrays():
    point_list = PointList.from_arrays(["a", "b"], [[1, 2, 3], [4, 5, 6]], ["da", "db"], [True, False], name="n")
    assert point_list == PointList((MarkupsPoint("a", (1.0, 2.0, 3.0), "da"),
                                    MarkupsPoint("b", (4.0, 5.0, 6.0), "db", "undefined")), "n")
    # Without `defined`, NaN rows are undefined: positions_ras() and from_arrays() undo each other.
    again = PointList.from_arrays(SAMPLE.labels, SAMPLE.positions_ras())
    assert [p.status for p in again.points] == ["defined", "defined", "undefined", "defined"]
    np.testing.assert_array_equal(again.positions_ras(), SAMPLE.positions_ras())
    with pytest.raises(InputError, match=r"shape \(2, 3\)"):
        PointList.from_arrays(["a", "b"], [[1, 2, 3]])
    with pytest.raises(InputError, match="descriptions"):
        PointList.from_arrays(["a"], [[1, 2, 3]], descriptions=["x", "y"])
    with pytest.raises(InputError, match=r"defined must have shape \(1,\)"):
        PointList.from_arrays(["a"], [[1, 2, 3]], defined=[True, True])
    with pytest.raises(InputError, match="finite position"):
        PointList.from_arrays(["a"], [[np.nan, 2, 3]], defined=[True])


def test_from_arrays_defaults_to_no_name_and_empty_descriptions():
    points = PointList.from_arrays(["A", "B"], [[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]])
    assert points.name == "" and [p.description for p in points.points] == ["", ""]
    assert [p.status for p in points.points] == ["defined", "undefined"]


@pytest.mark.parametrize("length, shown", [(78, f"'{'x' * 78}'"), (79, f"'{'x' * 76}..."), (200, f"'{'x' * 76}...")])
def test_a_bad_value_is_quoted_in_the_message_up_to_80_characters(tmp_path, length, shown):
    """The value's repr() (quotes included) whole up to 80 characters, else its first 77 and "..."."""
    path = tmp_path / "bad.fcsv"
    path.write_text("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n"
                    f"# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
                    f"1,{'x' * length},2,3,0,0,0,1,1,1,0,A,,\n")
    with pytest.raises(FileFormatError) as error:
        read_markups(path)
    assert f"got {shown};" in str(error.value)


# ------------------------------------------------------------------------------- messages, warnings, layouts

def bad_json(tmp_path: Path, markup: dict) -> Path:
    return write_text(tmp_path / "bad.mrk.json", json.dumps({"markups": [{"type": "Fiducial", **markup}]}))


@pytest.mark.parametrize(("markup", "message"), [
    ({"coordinateSystem": "XYZ"}, ": coordinateSystem must be 'LPS' or 'RAS', got 'XYZ'."),
    ({"coordinateUnits": ["inch", "UCUM", "inch"]},
     ": coordinateUnits must be 'mm' or 'um', got ['inch', 'UCUM', 'inch']."),
    ({"controlPoints": {}}, ": 'controlPoints' must be a list, got dict."),
    ({"controlPoints": [{"label": "a"}, 5]}, ", control point 2: expected an object, got 5."),
    ({"controlPoints": [{"label": 3}]}, ", control point 1: label and description must be strings, got 3, ''."),
    ({"controlPoints": [{"label": "a", "description": 4}]},
     ", control point 1: label and description must be strings, got 'a', 4."),
    ({"controlPoints": [{"positionStatus": "placed"}]},
     ", control point 1: positionStatus must be one of ('defined', 'preview', 'undefined'), got 'placed'."),
    ({"controlPoints": [{"label": "P7", "position": [1, 2]}]},
     ", control point 1 ('P7'): position must be 3 finite numbers, got [1, 2]."),
])
def test_json_errors_name_the_file_the_point_and_the_bad_value(tmp_path, markup, message):
    path = bad_json(tmp_path, markup)
    with pytest.raises(FileFormatError) as info:
        read_markups(path)
    assert str(info.value) == f"{path}{message}"


def test_json_too_long_a_number_names_the_error_and_its_first_100_characters(tmp_path):
    """An integer of 5,000 digits: Python's ValueError (over 100 characters) is named and cut at 100."""
    text = '{"markups": [{"type": "Fiducial", "name": ' + "1" * 5000 + "}]}"
    with pytest.raises(ValueError) as raw:
        json.loads(text)
    assert len(str(raw.value)) > 101
    path = write_text(tmp_path / "long.mrk.json", text)
    with pytest.raises(FileFormatError) as info:
        read_markups(path)
    assert str(info.value) == (f"{path} is not a markups file: its JSON is malformed (ValueError: "
                               f"{str(raw.value)[:100]}); fix the file or save it again from Slicer.")


def test_json_reader_warnings_name_the_file_the_markup_and_the_point(tmp_path, caplog):
    document = {"markups": [{"type": "Curve", "controlPoints": [{"label": "P", "position": ""}]}, {"type": "ROI"}]}
    path = write_text(tmp_path / "two.mrk.json", json.dumps(document))
    with caplog.at_level(logging.WARNING):
        assert read_markups(path).points == (MarkupsPoint("P", (0.0, 0.0, 0.0), status="undefined"),)
    assert [record.getMessage() for record in caplog.records] == [
        f"{path} has no point list; reading the control points of its 'Curve' markup.",
        f"{path} holds 2 markups; reading only the first point list.",
        f"{path}, control point 1 ('P') is defined but has no position; reading it as undefined, as Slicer does."]


def test_reading_slicers_own_json_file_logs_nothing(examples, caplog):
    with caplog.at_level(logging.DEBUG, logger="LandmarkDetectorLib"):
        read_markups(examples / "written-by-slicer-core-5.13.mrk.json")
    assert caplog.records == []  # one markup: no "holds 1 markups" warning


@pytest.mark.parametrize(("markup", "points"), [
    ({"name": 7, "controlPoints": [{"label": "a", "position": [1, 2, 3]}]}, (MarkupsPoint("a", (-1.0, -2.0, 3.0)),)),
    ({"name": ["list"]}, ()),  # no controlPoints: an empty point list
    ({}, ()),
])
def test_json_point_list_with_a_name_that_is_no_text_is_named_after_the_file(tmp_path, markup, points):
    point_list = read_markups(bad_json(tmp_path, markup))
    assert point_list == PointList(points, name="bad")


@pytest.mark.parametrize(("row", "message"), [
    ("2,4.5,-5", "line 5: expected id,x,y,z,... got '2,4.5,-5'; the file is truncated or not .fcsv."),
    ("2,4.5,-5.25,6,0,0,0,1,1,1,0,L2,,,defined,0",
     "line 5: positionStatus (column 15) must be 0, 1, 2 or 3, got 'defined'."),
])
def test_fcsv_errors_quote_the_bad_line_or_value(tmp_path, row, message):
    path = write_text(tmp_path / "bad.fcsv", "# Markups fiducial file version = 5.6\n# CoordinateSystem = LPS\n"
                                             f"# columns = id,x,y,z\n1,1,2,3,0,0,0,1,1,1,0,L1,,\n{row}\n")
    with pytest.raises(FileFormatError) as info:
        read_markups(path)
    assert str(info.value) == f"{path}, {message}"


def test_fcsv_coordinate_system_value_is_all_after_the_first_equals_sign(tmp_path):
    path = write_text(tmp_path / "bad.fcsv", "# Markups fiducial file version = 5.6\n# CoordinateSystem = RAS = LPS\n"
                                             "1,1,2,3\n")
    with pytest.raises(FileFormatError) as info:
        read_markups(path)
    assert str(info.value) == f"{path}, line 2: CoordinateSystem must be LPS, RAS, 0 or 1, got 'RAS = LPS'."


def test_fcsv_commented_out_coordinate_system_line_is_ignored_like_slicer_does(tmp_path):
    """Slicer reads a header option only from a line starting "# " (vtkMRMLMarkupsFiducialStorageNode)."""
    text = "# Markups fiducial file version = 5.6\n##CoordinateSystem = RAS\n1,1.5,-2,3,0,0,0,1,1,1,0,P,,\n"
    assert read_markups(write_text(tmp_path / "p.fcsv", text)).points[0].position_ras == (-1.5, 2.0, 3.0)  # LPS


EXPECTED_HEADER = "label,l,p,s,defined,selected,visible,locked,description"


@pytest.mark.parametrize(("text", "message"), [
    ("", f" is empty; expected a header row such as {EXPECTED_HEADER}."),
    ("label,x,y,z\nA,1,2,3\n",
     ": the header row must have r,a,s or l,p,s columns, got ['label', 'x', 'y', 'z']; "
     f"write it like {EXPECTED_HEADER}."),
    ("label,r,a,s\nA,1,two,3\n",
     ", line 2: column a must be a finite number, got 'two'; the file is truncated or corrupt."),
    ("label,r,a,s,defined\nA,1,2,3,yes\n", ", line 2: column defined must be 0 or 1, got 'yes'."),
    ("label,r,a,s\nA,1,2," + "9" * 140_000 + "\n",
     ", line 2: field larger than field limit (131072); the file is corrupt or not a table of points."),
])
def test_table_errors_name_the_file_and_quote_the_bad_value(tmp_path, text, message):
    path = write_text(tmp_path / "bad.csv", text)
    with pytest.raises(FileFormatError) as info:
        read_markups(path)
    assert str(info.value) == f"{path}{message}"


@pytest.mark.parametrize(("text", "position"), [("r,a,s\n1,2,3\n", (1.0, 2.0, 3.0)),
                                                 ("L,P,S\n1,2,3\n", (-1.0, -2.0, 3.0))])
def test_table_with_only_the_coordinate_columns(tmp_path, text, position):
    assert read_markups(write_text(tmp_path / "p.csv", text)).points == (MarkupsPoint("", position),)


@pytest.mark.parametrize("suffix", [".fcsv", ".csv", ".tsv"])
def test_line_break_refusal_names_the_file(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    with pytest.raises(FileFormatError) as info:
        write_markups(path, PointList((MarkupsPoint("two\nlines", (0.0, 0.0, 0.0)),)))
    assert str(info.value) == (f"cannot write {path}: point 'two\\nlines' has a line break in its label or "
                               "description, which Slicer cannot read in this format; write .mrk.json instead.")


def test_double_quote_warning_names_the_file_and_only_comes_with_a_double_quote(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        write_markups(tmp_path / "plain.csv", PointList(SAMPLE.points[:1] + SAMPLE.points[2:]))
    assert caplog.records == []
    path = tmp_path / "quoted.tsv"
    with caplog.at_level(logging.WARNING):
        write_markups(path, SAMPLE)
    assert [record.getMessage() for record in caplog.records] == [
        f"{path}: a label or description contains a double quote, which Slicer's table reader garbles (this module "
        "reads it back correctly); use .mrk.json for Slicer."]


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize("suffix", [".fcsv", ".csv", ".tsv"])
def test_csv_formats_end_lines_with_lf_only_on_every_platform(tmp_path, monkeypatch, suffix, windows):
    """As Slicer writes them on Linux and macOS. `windows`: text files opened as on Windows, where Python's text
    mode would turn each "\\n" into "\\r\\n" (the pure-Python io module, with os.linesep = "\\r\\n")."""
    if windows:
        import _pyio

        from LandmarkDetectorLib import fileio
        monkeypatch.setattr(fileio, "open", _pyio.open, raising=False)
        monkeypatch.setattr("os.linesep", "\r\n")
    path = tmp_path / f"points{suffix}"
    write_markups(path, PointList(SAMPLE.points[:3]))
    data = path.read_bytes()
    assert b"\r" not in data and data.count(b"\n") == 4 + (2 if suffix == ".fcsv" else 0) and data.endswith(b"\n")
    assert read_markups(path).points == SAMPLE.points[:3]


def test_written_json_layout_matches_slicers(tmp_path, examples):
    """Same keys, values, order and 4-space indentation as Slicer's file, up to the control points (its schema
    URL names v1.0.4, ours v1.0.3, which Slicer's older versions read too)."""
    slicer_lines = (examples / "written-by-slicer-core-5.13.mrk.json").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "points.mrk.json"
    write_markups(path, PointList((MarkupsPoint("L1", (1.0, 2.0, 3.0)), MarkupsPoint("L2", (-4.5, 5.25, 6.0), "desc"))))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1] == slicer_lines[1].replace("v1.0.4", "v1.0.3")
    assert lines[:1] + lines[2:17] == slicer_lines[:1] + slicer_lines[2:17]
    assert lines[7:10] == ['            "locked": false,', '            "fixedNumberOfControlPoints": false,',
                           '            "labelFormat": "%N-%d",']


def test_from_arrays_takes_none_for_a_missing_position():
    """A detector's output with None for a landmark it did not find: NaN, so an undefined point."""
    point_list = PointList.from_arrays(["found", "missed"], [[1, 2, 3], [None, None, None]])
    assert point_list.points == (MarkupsPoint("found", (1.0, 2.0, 3.0)),
                                 MarkupsPoint("missed", (0.0, 0.0, 0.0), status="undefined"))
    again = PointList.from_arrays(["missed"], [[None, None, None]], defined=[False])
    assert again.points == (MarkupsPoint("missed", (0.0, 0.0, 0.0), status="undefined"),)
