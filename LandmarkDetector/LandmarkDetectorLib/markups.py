"""Read and write Slicer Markups point lists (.mrk.json, .fcsv, .csv/.tsv) without Slicer.

In memory, positions are RAS millimetres, as in Slicer's scene. Files are written in LPS, as Slicer writes
them; reading accepts LPS or RAS. The details follow Slicer's own readers and writers
(vtkMRMLMarkupsJsonStorageNode, vtkMRMLMarkupsFiducialStorageNode, vtkSlicerMarkupsLogic), so that Slicer
loads what we write and we load what Slicer writes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import FileFormatError, InputError
from .fileio import atomic_open

logger = logging.getLogger(__name__)

PointStatus = Literal["defined", "preview", "undefined"]
"""Slicer's control point position status: placed, being placed, or a named slot with no position yet."""

_STATUSES: tuple[str, ...] = get_args(PointStatus)
_SUFFIXES = (".mrk.json", ".json", ".fcsv", ".csv", ".tsv")

# Slicer accepts any ".../markups-schema-v1.x.y.json#"; it still writes the "master" URL for older readers.
_SCHEMA_URL = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
               "markups-schema-v1.0.3.json#")
# Identity orientation (RAS) converted to LPS, written exactly as Slicer writes it.
_ORIENTATION_LPS = (-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0)

# Slicer ignores the version value (any non-empty one means "not a Slicer 3 file").
_FCSV_HEADER = ("# Markups fiducial file version = 4.11\n"
                "# CoordinateSystem = LPS\n"
                "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n")
_FCSV_STATUS_CODES = {"undefined": 0, "preview": 1, "defined": 2}
# Reading: empty (files older than the column) means defined; 3 is newer Slicer's "missing" (a skipped point).
_FCSV_STATUSES: dict[str, PointStatus] = {"": "defined", "0": "undefined", "1": "preview", "2": "defined",
                                          "3": "undefined"}
_TABLE_COLUMNS = ("label", "l", "p", "s", "defined", "selected", "visible", "locked", "description")


@dataclass(frozen=True)
class MarkupsPoint:
    """One control point of a point list.

    Attributes:
        label: text shown next to the point in Slicer.
        position_ras: (R, A, S) in mm. Undefined points keep the position their file had, or (0, 0, 0);
            a non-finite position of an undefined point becomes (0, 0, 0).
        description: free text.
        status: "defined", "preview" or "undefined" (a named slot without a position).

    Raises:
        InputError: status unknown, label/description not text, position not 3 numbers, or non-finite
            for a defined or preview point.
    """

    label: str
    position_ras: tuple[float, float, float]
    description: str = ""
    status: PointStatus = "defined"

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise InputError(f"point {self.label!r}: status must be one of {_STATUSES}, got {self.status!r}.")
        if not isinstance(self.label, str) or not isinstance(self.description, str):
            raise InputError(f"point label and description must be str, got {self.label!r}, {self.description!r}.")
        try:
            position = tuple(float(value) for value in self.position_ras)
            if len(position) != 3:
                raise ValueError
        except (TypeError, ValueError) as err:
            raise InputError(f"point {self.label!r}: position_ras must be 3 numbers (mm), "
                             f"got {self.position_ras!r}.") from err
        if not all(math.isfinite(value) for value in position):
            if self.status != "undefined":
                raise InputError(f"point {self.label!r}: a {self.status} point needs a finite position, got "
                                 f"{position}; use status='undefined' for a point without a position.")
            position = (0.0, 0.0, 0.0)
        object.__setattr__(self, "position_ras", position)


@dataclass(frozen=True)
class PointList:
    """An ordered list of control points, like Slicer's point list (vtkMRMLMarkupsFiducialNode).

    Attributes:
        points: the control points, in file order.
        name: the point list's name; empty if unknown.
    """

    points: tuple[MarkupsPoint, ...]
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))

    @property
    def labels(self) -> list[str]:
        """Labels of the points, in order."""
        return [point.label for point in self.points]

    def positions_ras(self) -> NDArray[np.float64]:
        """Positions as an (N, 3) RAS array in mm; rows of undefined points are NaN."""
        positions = np.array([point.position_ras for point in self.points], dtype=np.float64).reshape(-1, 3)
        positions[np.array([point.status == "undefined" for point in self.points], dtype=bool)] = np.nan
        return positions

    def get(self, label: str) -> MarkupsPoint | None:
        """Return the first point with this label, or None."""
        return next((point for point in self.points if point.label == label), None)

    @classmethod
    def from_arrays(cls, labels: Sequence[str], positions_ras: ArrayLike, descriptions: Sequence[str] | None = None,
                    defined: ArrayLike | None = None, name: str = "") -> PointList:
        """Build a point list from arrays, e.g. a detector's output.

        Args:
            labels: N labels.
            positions_ras: (N, 3) RAS positions in mm.
            descriptions: N descriptions; empty if None.
            defined: (N,) bool; False rows become undefined points. If None, rows with a non-finite value
                are undefined and the others defined, so ``from_arrays(pl.labels, pl.positions_ras())``
                keeps undefined points undefined.
            name: the point list's name.
        Returns:
            The point list; preview status cannot be expressed here.
        Raises:
            InputError: shapes do not match, or a defined row is not finite.
        """
        count = len(labels)
        positions = np.asarray(positions_ras, dtype=np.float64)
        if positions.shape != (count, 3):
            raise InputError(f"positions_ras must have shape ({count}, 3) for {count} labels, got {positions.shape}.")
        texts = [""] * count if descriptions is None else [str(text) for text in descriptions]
        if len(texts) != count:
            raise InputError(f"descriptions must have {count} entries, one per label, got {len(texts)}.")
        is_defined = np.isfinite(positions).all(axis=1) if defined is None else np.asarray(defined, dtype=bool)
        if is_defined.shape != (count,):
            raise InputError(f"defined must have shape ({count},), got {is_defined.shape}.")
        points = tuple(MarkupsPoint(str(label), (x, y, z), text, "defined" if ok else "undefined")
                       for label, (x, y, z), text, ok in zip(labels, positions, texts, is_defined, strict=True))
        return cls(points, name)


def read_markups(path: str | os.PathLike[str]) -> PointList:
    """Read a point list from a Slicer Markups file, choosing the format by extension.

    Supported: .mrk.json / .json (Markups JSON, first point-list entry), .fcsv (legacy fiducial CSV),
    .csv / .tsv (Slicer's control-points table). Positions are returned in RAS mm whatever the file's
    coordinate system. If the file stores no name, the name is the file name without its extension,
    as in Slicer.

    Raises:
        FileFormatError: the file does not exist, cannot be read, has an unsupported extension, or is
            corrupt (invalid JSON, wrong structure, non-numeric or non-finite coordinates...).
    """
    path = Path(path)
    suffix = markups_suffix(path)
    if suffix in (".mrk.json", ".json"):
        point_list = _read_mrk_json(path)
    elif suffix == ".fcsv":
        point_list = _read_fcsv(path)
    else:
        point_list = _read_table(path, "\t" if suffix == ".tsv" else ",")
    if not point_list.name:
        point_list = dataclasses.replace(point_list, name=path.name[:-len(suffix)])
    return point_list


def write_markups(path: str | os.PathLike[str], point_list: PointList, *, overwrite: bool = False) -> None:
    """Write a point list in the format given by the extension, in LPS mm, atomically.

    .mrk.json / .json files validate against Slicer's markups schema v1.0.3 and v1.0.4. In .csv / .tsv
    files a preview point is written as not defined (as Slicer does), so it reads back as undefined.

    Raises:
        FileExistsError: the file exists and ``overwrite`` is False (the file is left unchanged).
        FileFormatError: unsupported extension, missing or read-only folder, or a label/description with
            a line break in a .fcsv/.csv/.tsv file (Slicer cannot read it back; use .mrk.json).
    """
    path = Path(path)
    suffix = markups_suffix(path)
    if suffix in (".mrk.json", ".json"):
        _write_mrk_json(path, point_list, overwrite)
    elif suffix == ".fcsv":
        _write_fcsv(path, point_list, overwrite)
    else:
        _write_table(path, point_list, overwrite, "\t" if suffix == ".tsv" else ",")


def markups_suffix(path: str | os.PathLike[str]) -> str:
    """Return the supported extension of ``path`` or raise FileFormatError."""
    name = Path(path).name.lower()
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise FileFormatError(f"{path}: unsupported markups file extension; use one of {', '.join(_SUFFIXES)}.")


def _read_text(path: Path) -> str:
    """Read a UTF-8 text file (BOM allowed), raising FileFormatError on any failure."""
    if not path.exists():
        raise FileFormatError(f"{path} does not exist; check the file name and folder.")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{path} is not UTF-8 text ({err}); save it as UTF-8 or export it again.") from err
    except OSError as err:
        raise FileFormatError(f"cannot read {path}: {err.strerror or err}; check that it is a readable file.") from err


def _flip_xy(x: float, y: float, z: float) -> tuple[float, float, float]:
    """Convert RAS <-> LPS; ``0.0 - v`` instead of ``-v`` so that files never show -0.0."""
    return 0.0 - x, 0.0 - y, z


def _format_number(value: float) -> str:
    """Shortest text that reads back to the same float, without a trailing ".0" (as Slicer writes)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _parse_number(text: str, where: str, column: str) -> float:
    """Parse a finite float from a CSV field."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise FileFormatError(f"{where}: column {column} must be a finite number, got {_clip(text)}; "
                              "the file is truncated or corrupt.")
    return value


def _clip(value: Any, limit: int = 80) -> str:
    """repr() of a value read from a file, shortened for an error message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _field(fields: list[str], index: int | None) -> str:
    """Return ``fields[index]``, or "" when the column is absent or the row is short."""
    return fields[index] if index is not None and index < len(fields) else ""


def _require_single_line(path: Path, point_list: PointList) -> None:
    """Refuse line breaks in labels/descriptions: Slicer's .fcsv/.csv readers split records on them."""
    for point in point_list.points:
        if any(char in point.label + point.description for char in "\r\n"):
            raise FileFormatError(f"cannot write {path}: point {point.label!r} has a line break in its label or "
                                  "description, which Slicer cannot read in this format; write .mrk.json instead.")


def _read_mrk_json(path: Path) -> PointList:
    """Read the first point list of a Markups JSON file."""
    try:
        document = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{path} is not valid JSON ({err}); fix the file or save it again from Slicer.") from err
    except (ValueError, RecursionError) as err:  # an integer of over 4300 digits; nesting deeper than the stack
        raise FileFormatError(f"{path} is not a markups file: its JSON is malformed ({type(err).__name__}: "
                              f"{str(err)[:100]}); fix the file or save it again from Slicer.") from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list) or not all(isinstance(markup, dict) for markup in markups):
        raise FileFormatError(f"{path} is not a Slicer markups file: expected an object with a 'markups' list of "
                              "objects; save the point list from Slicer as .mrk.json.")
    markup = next((m for m in markups if m.get("type") == "Fiducial"), None)
    if markup is None:
        markup = next((m for m in markups if "controlPoints" in m), None)
        if markup is None:
            raise FileFormatError(f"{path} contains no point list (no markup of type 'Fiducial' and none with "
                                  "'controlPoints'); save a point list from Slicer.")
        logger.warning("%s has no point list; reading the control points of its %r markup.", path, markup.get("type"))
    if len(markups) > 1:
        logger.warning("%s holds %d markups; reading only the first point list.", path, len(markups))

    system = markup.get("coordinateSystem", "LPS")  # Slicer's default when the key is absent
    if system not in ("LPS", "RAS"):
        raise FileFormatError(f"{path}: coordinateSystem must be 'LPS' or 'RAS', got {_clip(system)}.")
    units = markup.get("coordinateUnits", "mm")
    unit = units[0] if isinstance(units, list) and units else units
    if unit not in ("mm", "um"):
        raise FileFormatError(f"{path}: coordinateUnits must be 'mm' or 'um', got {_clip(units)}.")
    scale = 1.0 if unit == "mm" else 1e-3
    items = markup.get("controlPoints", [])
    if not isinstance(items, list):
        raise FileFormatError(f"{path}: 'controlPoints' must be a list, got {type(items).__name__}.")

    points = (_json_point(item, f"{path}, control point {index}", system == "LPS", scale)
              for index, item in enumerate(items, start=1))
    name = markup.get("name", "")
    return PointList(tuple(points), name if isinstance(name, str) else "")


def _json_point(item: Any, where: str, lps: bool, scale: float) -> MarkupsPoint:
    """Convert one entry of a JSON 'controlPoints' list (positions in LPS or RAS, ``scale`` mm per unit)."""
    if not isinstance(item, dict):
        raise FileFormatError(f"{where}: expected an object, got {_clip(item)}.")
    label, description = item.get("label", ""), item.get("description", "")
    if not isinstance(label, str) or not isinstance(description, str):
        raise FileFormatError(f"{where}: label and description must be strings, got {_clip(label)}, "
                              f"{_clip(description)}.")
    status = item.get("positionStatus", "defined")
    status = "undefined" if status == "missing" else status  # newer Slicer: a skipped point, no position
    if status not in _STATUSES:
        raise FileFormatError(f"{where}: positionStatus must be one of {_STATUSES}, got {_clip(status)}.")
    position = item.get("position", "")
    if position == "":  # Slicer writes "position": "" for points that are not defined
        if status == "defined":
            logger.warning("%s (%r) is defined but has no position; reading it as undefined, as Slicer does.",
                           where, label)
            status = "undefined"
        return MarkupsPoint(label, (0.0, 0.0, 0.0), description, status)
    try:  # float() of a JSON integer beyond the float range raises OverflowError
        numbers = [float(v) for v in position] if isinstance(position, list) and not any(
            isinstance(v, (bool, str)) for v in position) else []
    except (TypeError, ValueError, OverflowError):
        numbers = []
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise FileFormatError(f"{where} ({_clip(label)}): position must be 3 finite numbers, got {_clip(position)}.")
    x, y, z = (v * scale for v in numbers)
    return MarkupsPoint(label, _flip_xy(x, y, z) if lps else (x, y, z), description, status)


def _write_mrk_json(path: Path, point_list: PointList, overwrite: bool) -> None:
    """Write a Markups JSON file (LPS, mm) that validates against Slicer's schema v1.0.3 and v1.0.4."""
    markup: dict[str, Any] = {"type": "Fiducial"}
    if point_list.name:  # without it Slicer names the node after the file
        markup["name"] = point_list.name
    markup.update({
        "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False, "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d", "lastUsedControlPointNumber": len(point_list.points),
        "controlPoints": [{
            "id": str(index), "label": point.label, "description": point.description, "associatedNodeID": "",
            "position": list(_flip_xy(*point.position_ras)), "orientation": list(_ORIENTATION_LPS),
            "selected": True, "locked": False, "visibility": True, "positionStatus": point.status,
        } for index, point in enumerate(point_list.points, start=1)],
    })
    with atomic_open(path, "w", overwrite=overwrite) as file:
        json.dump({"@schema": _SCHEMA_URL, "markups": [markup]}, file, indent=4, ensure_ascii=False, allow_nan=False)
        file.write("\n")


def _read_fcsv(path: Path) -> PointList:
    """Read a legacy fiducial CSV file (Slicer 4.x-5.x)."""
    lps = True  # Slicer's default when the header has no CoordinateSystem line
    points = []
    for line_number, line in enumerate(_read_text(path).split("\n"), start=1):
        where = f"{path}, line {line_number}"
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            if key.strip() == "CoordinateSystem":
                # Slicer 4.x wrote numeric codes: 0 = RAS, 1 = LPS.
                value = value.strip().upper()
                if value not in ("RAS", "LPS", "0", "1"):
                    raise FileFormatError(f"{where}: CoordinateSystem must be LPS, RAS, 0 or 1, got {_clip(value)}.")
                lps = value in ("LPS", "1")
            continue
        if not line.strip():
            continue
        try:
            fields = next(csv.reader([line]))
        except csv.Error as err:  # a field over csv.field_size_limit() (128 KiB)
            raise FileFormatError(f"{where}: {err}; the file is corrupt or not .fcsv.") from None
        if len(fields) < 4:
            raise FileFormatError(f"{where}: expected id,x,y,z,... got {_clip(line)}; the file is truncated or not "
                                  ".fcsv.")
        x, y, z = (_parse_number(fields[column], where, name) for column, name in ((1, "x"), (2, "y"), (3, "z")))
        code = _field(fields, 14).strip()  # positionStatus
        if code not in _FCSV_STATUSES:
            raise FileFormatError(f"{where}: positionStatus (column 15) must be 0, 1, 2 or 3, got {_clip(code)}.")
        points.append(MarkupsPoint(_field(fields, 11), _flip_xy(x, y, z) if lps else (x, y, z), _field(fields, 12),
                                   _FCSV_STATUSES[code]))
    return PointList(tuple(points))


def _write_fcsv(path: Path, point_list: PointList, overwrite: bool) -> None:
    """Write a legacy fiducial CSV file in LPS, with the positionStatus/autoCreated columns Slicer adds."""
    _require_single_line(path, point_list)
    with atomic_open(path, "w", overwrite=overwrite, newline="") as file:
        file.write(_FCSV_HEADER)
        writer = csv.writer(file, lineterminator="\n")
        for index, point in enumerate(point_list.points, start=1):
            # The last two columns (positionStatus, autoCreated) are not named in the header, as in Slicer's files.
            writer.writerow([index, *map(_format_number, _flip_xy(*point.position_ras)), 0, 0, 0, 1, 1, 1, 0,
                             point.label, point.description, "", _FCSV_STATUS_CODES[point.status], 0])


def _read_table(path: Path, delimiter: str) -> PointList:
    """Read Slicer's control-points table (.csv/.tsv) with r,a,s or l,p,s columns."""
    rows = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
    try:
        return _table_points(path, rows)
    except csv.Error as err:  # a field over csv.field_size_limit() (128 KiB)
        raise FileFormatError(f"{path}, line {rows.line_num}: {err}; the file is corrupt or not a table of "
                              "points.") from None


def _table_points(path: Path, rows: Any) -> PointList:
    """The points of a table file from its csv reader."""
    header = next(rows, None)
    if header is None:
        raise FileFormatError(f"{path} is empty; expected a header row such as {','.join(_TABLE_COLUMNS)}.")
    columns = {name.strip().lower(): index for index, name in enumerate(header)}
    if {"r", "a", "s"} <= columns.keys():
        axes, lps = ("r", "a", "s"), False
    elif {"l", "p", "s"} <= columns.keys():
        axes, lps = ("l", "p", "s"), True
    else:
        raise FileFormatError(f"{path}: the header row must have r,a,s or l,p,s columns, got {_clip(header)}; "
                              f"write it like {','.join(_TABLE_COLUMNS)}.")
    points = []
    for row in rows:
        if not any(field.strip() for field in row):
            continue
        where = f"{path}, line {rows.line_num}"
        x, y, z = (_parse_number(_field(row, columns[axis]), where, axis) for axis in axes)
        defined = _field(row, columns.get("defined")).strip()
        if defined not in ("", "0", "1"):
            raise FileFormatError(f"{where}: column defined must be 0 or 1, got {_clip(defined)}.")
        status: PointStatus = "undefined" if defined == "0" else "defined"
        points.append(MarkupsPoint(_field(row, columns.get("label")), _flip_xy(x, y, z) if lps else (x, y, z),
                                   _field(row, columns.get("description")), status))
    return PointList(tuple(points))


def _write_table(path: Path, point_list: PointList, overwrite: bool, delimiter: str) -> None:
    """Write Slicer's control-points table (.csv/.tsv) in LPS."""
    _require_single_line(path, point_list)
    if any('"' in point.label + point.description for point in point_list.points):
        logger.warning("%s: a label or description contains a double quote, which Slicer's table reader "
                       "garbles (this module reads it back correctly); use .mrk.json for Slicer.", path)
    with atomic_open(path, "w", overwrite=overwrite, newline="") as file:
        writer = csv.writer(file, delimiter=delimiter, lineterminator="\n")
        writer.writerow(_TABLE_COLUMNS)
        for point in point_list.points:
            writer.writerow([point.label, *map(_format_number, _flip_xy(*point.position_ras)),
                             int(point.status == "defined"), 1, 1, 0, point.description])
