"""Our Markups files against Slicer's real readers and writers (slicer-core): each side reads the other's files."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk

from LandmarkDetectorLib.markups import MarkupsPoint, PointList, read_markups, write_markups

STATUS_CODES = {"undefined": 0, "preview": 1, "defined": 2}  # vtkMRMLMarkupsNode::PositionUndefined, ...
SAMPLE = PointList((
    MarkupsPoint("L1", (1.0, 2.0, 3.0)),
    MarkupsPoint("a,b ü 漢字", (-4.5, 5.25, 6.123456789012345), "desc, with comma"),
    MarkupsPoint("not placed", (7.0, -8.0, 9.5), "", "undefined"),
    MarkupsPoint("preview", (-10.0, 20.0, 30.25), "being placed", "preview"),
    MarkupsPoint('say "hi"', (0.5, -0.25, 123.456789), 'quote "in" description'),
), name="My points")
STORAGE_NODES = {".mrk.json": "vtkMRMLMarkupsJsonStorageNode", ".fcsv": "vtkMRMLMarkupsFiducialStorageNode"}


def read_with_slicer(scene: slicer.vtkMRMLScene, path, storage_class: str) -> slicer.vtkMRMLMarkupsFiducialNode:
    storage_node = scene.AddNode(getattr(slicer, storage_class)())
    storage_node.SetFileName(str(path))
    node = scene.AddNode(slicer.vtkMRMLMarkupsFiducialNode())
    assert storage_node.ReadData(node) == 1
    return node


def node_points(node: slicer.vtkMRMLMarkupsFiducialNode) -> list[tuple[str, str, int, list[float]]]:
    """(label, description, position status, RAS position) of each control point."""
    points = []
    for index in range(node.GetNumberOfControlPoints()):
        position_ras = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(index, position_ras)
        points.append((node.GetNthControlPointLabel(index), node.GetNthControlPointDescription(index),
                       node.GetNthControlPointPositionStatus(index), position_ras))
    return points


def fill_node(scene: slicer.vtkMRMLScene, point_list: PointList) -> slicer.vtkMRMLMarkupsFiducialNode:
    node = scene.AddNode(slicer.vtkMRMLMarkupsFiducialNode())
    for index, point in enumerate(point_list.points):
        node.AddControlPoint(vtk.vtkVector3d(*point.position_ras), point.label)
        node.SetNthControlPointDescription(index, point.description)
        if point.status == "undefined":
            node.UnsetNthControlPointPosition(index)  # keeps the position, sets PositionUndefined
        elif point.status == "preview":
            node.SetNthControlPointPosition(index, *point.position_ras, node.PositionPreview)
    return node


@pytest.mark.parametrize("suffix", list(STORAGE_NODES))
def test_slicer_reads_our_files(tmp_path, mrml_scene, suffix):
    path = tmp_path / f"points{suffix}"
    write_markups(path, SAMPLE)
    node = read_with_slicer(mrml_scene, path, STORAGE_NODES[suffix])
    points = node_points(node)
    assert [p[:3] for p in points] == [(p.label, p.description, STATUS_CODES[p.status]) for p in SAMPLE.points]
    # We write positions of undefined and preview points too; Slicer keeps them.
    np.testing.assert_allclose([p[3] for p in points], [p.position_ras for p in SAMPLE.points], rtol=0, atol=1e-3)
    if suffix == ".mrk.json":
        assert node.GetName() == "My points"


@pytest.mark.parametrize("suffix", list(STORAGE_NODES))
def test_we_read_slicer_files(tmp_path, mrml_scene, suffix):
    node = fill_node(mrml_scene, SAMPLE)
    storage_node = mrml_scene.AddNode(getattr(slicer, STORAGE_NODES[suffix])())
    path = tmp_path / f"slicer{suffix}"
    storage_node.SetFileName(str(path))
    assert storage_node.WriteData(node) == 1
    point_list = read_markups(path)
    assert [(p.label, p.description, p.status) for p in point_list.points] == [
        (p.label, p.description, p.status) for p in SAMPLE.points]
    positions = np.array([p.position_ras for p in point_list.points])
    expected = np.array([p.position_ras for p in SAMPLE.points])
    if suffix == ".mrk.json":
        # Slicer's JSON writer stores "position": "" for undefined and preview points: the position is lost.
        assert '"position": ""' in path.read_text(encoding="utf-8")
        expected[[2, 3]] = 0.0
    np.testing.assert_allclose(positions, expected, rtol=0, atol=1e-9)


# Slicer's table (.csv/.tsv) import/export lives in the Markups module logic, which slicer-core includes.
# Its table reader does not understand "" inside quoted fields, and its writer does not escape them (Slicer
# cannot read back its own file then), so the table sample has no double quotes. It also writes 6 significant
# digits, and has no preview status (preview is written as defined = 0).
TABLE_SAMPLE = PointList(SAMPLE.points[:3])


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_slicer_markups_logic_reads_our_tables(tmp_path, suffix):
    path = tmp_path / f"points{suffix}"
    write_markups(path, TABLE_SAMPLE)
    node = slicer.mrmlScene.AddNode(slicer.vtkMRMLMarkupsFiducialNode())
    assert slicer.vtkSlicerMarkupsLogic.ImportControlPointsFromCSV(node, str(path))
    points = node_points(node)
    assert [p[:3] for p in points] == [(p.label, p.description, STATUS_CODES[p.status]) for p in TABLE_SAMPLE.points]
    np.testing.assert_allclose([p[3] for p in points], [p.position_ras for p in TABLE_SAMPLE.points], atol=1e-9)


def test_we_read_slicer_markups_logic_csv(tmp_path, mrml_scene):
    node = fill_node(mrml_scene, TABLE_SAMPLE)
    path = tmp_path / "slicer.csv"
    assert slicer.vtkSlicerMarkupsLogic.ExportControlPointsToCSV(node, str(path))
    point_list = read_markups(path)
    assert [(p.label, p.description, p.status) for p in point_list.points] == [
        (p.label, p.description, p.status) for p in TABLE_SAMPLE.points]
    np.testing.assert_allclose(point_list.positions_ras()[:2], TABLE_SAMPLE.positions_ras()[:2], rtol=0, atol=1e-3)
