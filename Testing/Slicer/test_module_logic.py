"""LandmarkDetectorLogic on Slicer's real MRML (slicer-core): volume nodes with oblique, flipped grids under linear
parent transforms in, point lists out; bad inputs and Cancel leave the scene as it was."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk
from analytic_model import save_centroid_model

from LandmarkDetectorLib import Cancelled, InputError, detect_landmarks, load_model
from LandmarkDetectorLib.markups import read_markups
from LandmarkDetectorLib.model import model_name_of, read_metadata
from LandmarkDetectorLib.synthetic.dataset import synthesize_case

from phantoms import make_ijk_to_ras, rotation, spheres_volume

SEED = 515_151  # not a training or evaluation seed of the bundled models
STATUS_DEFINED, STATUS_UNDEFINED = 2, 0  # vtkMRMLMarkupsNode::PositionDefined / PositionUndefined
TRANSFORM = np.eye(4)  # parent transform of the test volumes: a rotation and a translation
TRANSFORM[:3, :3] = rotation((0.2, -0.5, 1.0), 27.0)
TRANSFORM[:3, 3] = (35.0, -20.0, 12.5)


@pytest.fixture(scope="module")
def hand_case():
    return synthesize_case("hand", SEED, 0)


@pytest.fixture(scope="module")
def centroid_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "centroid.pt"
    save_centroid_model(path)
    return load_model(path, "cpu")


def flipped(voxels_kji: np.ndarray, ijk_to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image with its i and k axes reversed (another, equally valid voxel order)."""
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    flip[[0, 2], 3] = [voxels_kji.shape[2] - 1, voxels_kji.shape[0] - 1]
    return np.ascontiguousarray(voxels_kji[::-1, :, ::-1]), ijk_to_ras @ flip


def add_transformed_volume(voxels_kji: np.ndarray, ijk_to_world: np.ndarray, name: str = "Case"):
    """A volume node under a linear transform (TRANSFORM) whose world geometry is ``ijk_to_world``: its own,
    local IJK-to-RAS is then oblique."""
    volume = slicer.util.addVolumeFromArray(voxels_kji, np.linalg.inv(TRANSFORM) @ ijk_to_world, name)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Pose")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(TRANSFORM))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    return volume


def control_points(node) -> list[tuple[str, str, int, list[float]]]:
    """(label, description, position status, world RAS position) of each control point."""
    points = []
    for index in range(node.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, position)
        points.append((node.GetNthControlPointLabel(index), node.GetNthControlPointDescription(index),
                       node.GetNthControlPointPositionStatus(index), position))
    return points


def scene_state() -> list[tuple[str, int]]:
    """Every node of the scene with its modification time."""
    scene = slicer.mrmlScene
    return [(scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetMTime()) for i in range(scene.GetNumberOfNodes())]


def sphere_volume():
    """(voxels, world IJK-to-RAS, centre, radius): a sphere in a flipped, oblique grid."""
    shape = (45, 41, 39)
    centre, radius = np.array([12.0, -8.0, 20.0]), 14.0
    direction = rotation((1.0, 2.0, 0.5), 33.0) @ np.diag([1.0, -1.0, -1.0])
    ijk_to_ras = make_ijk_to_ras(direction, (1.1, 1.3, 1.2), shape, centre + 3.0)
    return spheres_volume(shape, ijk_to_ras, centre, radius), ijk_to_ras, centre, radius


def test_hand_landmarks_within_the_model_card_under_a_transform(module, hand_model, hand_case):
    voxels, ijk_to_world = flipped(hand_case.voxels_kji, hand_case.ijk_to_ras)
    volume = add_transformed_volume(voxels, ijk_to_world, "Hand")
    local = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(local)
    assert not np.allclose(np.abs(slicer.util.arrayFromVTKMatrix(local)[:3, :3]).max(axis=0),
                           np.abs(slicer.util.arrayFromVTKMatrix(local)[:3, :3]).sum(axis=0)), "not oblique"

    points = module.LandmarkDetectorLogic().detect(volume, model=hand_model, device="cpu")

    assert points.GetName() == "Hand landmarks"
    found = control_points(points)
    assert [p[0] for p in found] == list(hand_case.landmark_names)
    assert all(p[1].startswith("confidence ") and "not found" not in p[1] for p in found)
    assert [p[2] for p in found] == [STATUS_DEFINED] * 5
    card = hand_model.metadata.metrics["evaluation"]["heatmap-unet"]["model"]["all"]
    errors = np.linalg.norm(np.array([p[3] for p in found]) - hand_case.landmarks_ras, axis=1)
    assert errors.max() < card["max_mm"] + 2.0, errors
    # The same numbers as the core API given the world geometry directly: the transform was applied exactly.
    direct = detect_landmarks(voxels, ijk_to_world, hand_model, "cpu")
    np.testing.assert_allclose([p[3] for p in found], direct.points_ras, atol=0.5)


def test_wholebody_ct_landmarks_within_the_model_card_under_a_transform(module):
    """The bundled wholebody-ct model, by name, on a synthetic CT with one landmark (a fingertip) out of view."""
    case = synthesize_case("body", SEED, 3)
    assert list(case.in_view).count(False) == 1
    voxels, ijk_to_world = flipped(case.voxels_kji, case.ijk_to_ras)
    volume = add_transformed_volume(voxels, ijk_to_world, "Body")
    local = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(local)
    assert np.count_nonzero(np.abs(slicer.util.arrayFromVTKMatrix(local)[:3, :3]) > 1e-3) == 9, "not oblique"

    logic = module.LandmarkDetectorLogic()
    points = logic.detect(volume, model="wholebody-ct", device="cpu")

    found = control_points(points)
    assert [p[0] for p in found] == list(case.landmark_names)
    card = logic.loadModel("wholebody-ct", "cpu").metadata.metrics["evaluation"]["heatmap-unet"]["model"]
    # Each landmark within the worst landmark's 95th percentile on the model card (43 mm, a middle fingertip).
    tolerance_mm = max(card[name]["p95_mm"] for name in case.landmark_names) + 2.0
    placed = np.array([p[2] == STATUS_DEFINED for p in found])
    errors = np.linalg.norm(np.array([p[3] for p in found]) - case.landmarks_ras, axis=1)
    errors_by_name = dict(zip(case.landmark_names, errors.round(1), strict=True))
    assert all(errors[placed & case.in_view] < tolerance_mm), errors_by_name
    # In-view landmarks not found: at most twice the card's share on primitive bodies (at least one).
    missed_share = logic.loadModel("wholebody-ct", "cpu").metadata.metrics["evaluation"]["heatmap-unet"][
        "detection"]["in_view_reported_not_found"]
    allowed = max(1, int(np.ceil(2 * missed_share * case.in_view.sum())))
    assert sum(placed & case.in_view) >= case.in_view.sum() - allowed, found
    # The caller's mirror tolerance replaces the model's: none left out by the check, or all but exact agreements.
    loose = logic.detectLandmarks(volume, "wholebody-ct", "cpu", mirrorToleranceMm=float("inf"))
    strict = logic.detectLandmarks(volume, "wholebody-ct", "cpu", mirrorToleranceMm=1e-6)
    assert strict.found.sum() < loose.found.sum() and strict.found.sum() <= placed.sum() <= loose.found.sum()
    assert not any(placed & ~case.in_view), found  # the fingertip out of view is an unplaced point


def test_analytic_model_lands_on_the_sphere(module, centroid_model):
    voxels, ijk_to_world, centre, radius = sphere_volume()
    volume = add_transformed_volume(voxels, ijk_to_world)
    points = module.LandmarkDetectorLogic().detect(volume, model=centroid_model, device="cpu")
    position = control_points(points)[0][3]
    np.testing.assert_allclose(position, detect_landmarks(voxels, ijk_to_world, centroid_model).points_ras[0],
                               atol=0.5)
    # The mean surface depth over a sphere's disk lies 2/3 of the radius in front of (anterior to) its centre.
    np.testing.assert_allclose(position, centre + [0.0, 2 * radius / 3, 0.0], atol=0.5)


def cut_off_fingers(case):
    """The case without its fingertips' half (RAS positions unchanged): the fingertips are out of the field of view."""
    ijk = np.linalg.solve(case.ijk_to_ras, np.append(case.landmarks_ras[2], 1.0))[:3]
    size_ijk = np.array(case.voxels_kji.shape[::-1])
    offset = ijk - (size_ijk - 1) / 2
    axis = int(np.argmax(np.abs(offset) / size_ijk))
    keep = slice(0, int(size_ijk[axis] * 0.55)) if offset[axis] > 0 else slice(int(size_ijk[axis] * 0.45), None)
    index = [slice(None)] * 3
    index[2 - axis] = keep
    shift = np.eye(4)
    shift[axis, 3] = keep.start or 0
    return np.ascontiguousarray(case.voxels_kji[tuple(index)]), case.ijk_to_ras @ shift


def test_not_found_landmarks_are_unplaced_and_the_list_round_trips_through_slicer_storage(
        module, hand_model, hand_case, tmp_path):
    voxels, ijk_to_world = flipped(*cut_off_fingers(hand_case))
    volume = add_transformed_volume(voxels, ijk_to_world, "Palm")
    points = module.LandmarkDetectorLogic().detect(volume, model=hand_model, device="cpu")
    detected = control_points(points)
    statuses = [p[2] for p in detected]
    found = detect_landmarks(voxels, ijk_to_world, hand_model, "cpu").found
    assert not found.all()
    assert statuses == [STATUS_DEFINED if ok else STATUS_UNDEFINED for ok in found], detected
    for _label, description, status, _position in detected:
        assert description.startswith("confidence ")
        assert description.endswith("; not found") == (status == STATUS_UNDEFINED)

    storage = slicer.mrmlScene.AddNode(slicer.vtkMRMLMarkupsJsonStorageNode())
    storage.SetFileName(str(tmp_path / "palm.mrk.json"))
    assert storage.WriteData(points) == 1
    reloaded = slicer.mrmlScene.AddNode(slicer.vtkMRMLMarkupsFiducialNode())
    assert storage.ReadData(reloaded) == 1  # Slicer names a loaded list after its file, not stored inside
    again = control_points(reloaded)
    assert [p[:3] for p in again] == [p[:3] for p in detected]
    # Slicer's JSON writer drops the positions of unplaced points; placed ones come back as they were.
    placed = [i for i, status in enumerate(statuses) if status == STATUS_DEFINED]
    np.testing.assert_allclose([again[i][3] for i in placed], [detected[i][3] for i in placed], atol=1e-6)
    assert read_markups(tmp_path / "palm.mrk.json").labels == list(hand_case.landmark_names)


def test_each_run_makes_a_new_list_and_leaves_the_users_lists_alone(module, centroid_model):
    voxels, ijk_to_world, _centre, _radius = sphere_volume()
    volume = add_transformed_volume(voxels, ijk_to_world, "Ball")
    users = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Ball landmarks")
    users.AddControlPoint(1.0, 2.0, 3.0, "mine")
    logic = module.LandmarkDetectorLogic()
    first = logic.detect(volume, model=centroid_model)
    before = control_points(first), first.GetMTime(), control_points(users), users.GetMTime()
    second = logic.detect(volume, model=centroid_model)
    assert len({users.GetID(), first.GetID(), second.GetID()}) == 3
    assert [first.GetName(), second.GetName()] == ["Ball landmarks_1", "Ball landmarks_2"]
    assert (control_points(first), first.GetMTime(), control_points(users), users.GetMTime()) == before


def test_a_given_list_has_its_points_replaced(module, centroid_model):
    voxels, ijk_to_world, _centre, _radius = sphere_volume()
    volume = add_transformed_volume(voxels, ijk_to_world)
    target = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Target")
    for index in range(3):
        target.AddControlPoint(float(index), 0.0, 0.0, f"old {index}")
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    assert module.LandmarkDetectorLogic().detect(volume, target, model=centroid_model) is target
    assert [p[0] for p in control_points(target)] == ["Centroid"]
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes


def test_projection_volume_is_the_canvas_in_the_coronal_plane(module, centroid_model):
    voxels, ijk_to_world, _centre, _radius = sphere_volume()
    volume = add_transformed_volume(voxels, ijk_to_world)
    logic = module.LandmarkDetectorLogic()
    landmarks = logic.detectLandmarks(volume, centroid_model)
    projection = logic.addProjectionVolume(landmarks, "Ball projection")
    image = slicer.util.arrayFromVolume(projection)
    assert image.shape == (1, *landmarks.canvas.image.shape) and image.max() == 255
    matrix = vtk.vtkMatrix4x4()
    projection.GetIJKToRASMatrix(matrix)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrix)[:3, 2], [0.0, -1.0, 0.0], atol=1e-9)


def add_bad_input(kind: str):
    """An input the logic must refuse, in a scene that also holds a good volume."""
    good = slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.int16), name="Good")
    if kind == "none":
        return None
    if kind == "2D image":
        return slicer.util.addVolumeFromArray(np.ones((1, 30, 40), np.int16), name="Slice")
    if kind == "label map":
        return slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.uint8), name="Labels",
                                              nodeClassName="vtkMRMLLabelMapVolumeNode")
    if kind == "vector volume":
        return slicer.util.addVolumeFromArray(np.ones((6, 7, 8, 3), np.uint8), name="RGB",
                                              nodeClassName="vtkMRMLVectorVolumeNode")
    if kind == "no voxels":
        return slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty")
    transform = slicer.mrmlScene.AddNewNodeByClass(kind, "Warp")
    linear = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Pose")
    linear.SetAndObserveTransformNodeID(transform.GetID())  # non-linear further up the chain counts too
    good.SetAndObserveTransformNodeID(linear.GetID())
    return good


@pytest.mark.parametrize(("kind", "message"), [
    ("none", "Select an input volume"), ("2D image", "2D image"), ("label map", "label map"),
    ("vector volume", "vector, color or tensor"), ("no voxels", "no voxels"),
    ("vtkMRMLGridTransformNode", "non-linear transform 'Warp'"),
    ("vtkMRMLBSplineTransformNode", "non-linear transform 'Warp'"),
])
def test_bad_inputs_are_refused_and_the_scene_is_unchanged(module, centroid_model, kind, message):
    bad = add_bad_input(kind)
    logic = module.LandmarkDetectorLogic()
    assert message in logic.inputProblem(bad)
    before = scene_state()
    with pytest.raises(InputError, match=message):
        logic.detect(bad, model=centroid_model)
    assert scene_state() == before


@pytest.mark.parametrize("cancel_after", [0, 2])
def test_cancel_leaves_the_scene_unchanged(module, centroid_model, cancel_after):
    voxels, ijk_to_world, _centre, _radius = sphere_volume()
    volume = add_transformed_volume(voxels, ijk_to_world)
    checks = []
    before = scene_state()
    with pytest.raises(Cancelled):
        module.LandmarkDetectorLogic().detect(volume, model=centroid_model, progress=lambda f, m: None,
                                              shouldCancel=lambda: checks.append(1) or len(checks) > cancel_after)
    assert scene_state() == before


def test_finetune_arguments_are_checked_before_anything_is_written(module, monkeypatch, tmp_path):
    logic = module.LandmarkDetectorLogic
    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path))
    with pytest.raises(InputError, match="bundled model"):
        logic().finetune([], "hand-mr", "hand-mr")
    volume = slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.int16))
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    with pytest.raises(InputError, match="at least 2 volumes"):
        logic().finetune([(volume, points)], "hand-mr", "mine")
    with pytest.raises(InputError, match="2 folds or more"):
        logic().finetune([(volume, points)] * 2, "hand-mr", "mine", folds=1)
    assert not (tmp_path / "mine.pt").exists()


def test_point_list_from_node_is_in_world_coordinates(module):
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(TRANSFORM))
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Marks")
    node.SetAndObserveTransformNodeID(transform.GetID())
    node.AddControlPoint(1.0, 2.0, 3.0, "ThumbTip")
    node.AddControlPoint(4.0, 5.0, 6.0, "IndexTip")
    node.UnsetNthControlPointPosition(1)
    points = module.LandmarkDetectorLogic.pointListFromNode(node)
    assert points.name == "Marks" and points.labels == ["ThumbTip", "IndexTip"]
    assert [p.status for p in points.points] == ["defined", "undefined"]
    np.testing.assert_allclose(points.points[0].position_ras, (TRANSFORM @ [1.0, 2.0, 3.0, 1.0])[:3], atol=1e-9)


@pytest.mark.slow
def test_finetune_from_scene_cases_saves_a_user_model(module, monkeypatch, tmp_path):
    monkeypatch.setenv("LANDMARK_DETECTOR_MODELS", str(tmp_path / "models"))
    cases = []
    for index in range(2):
        case = synthesize_case("hand", SEED, 10 + index)
        volume = add_transformed_volume(case.voxels_kji, case.ijk_to_ras, f"Hand {index}")
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"Hand {index} points")
        for name, position in zip(case.landmark_names, case.landmarks_ras, strict=True):
            points.AddControlPointWorld(vtk.vtkVector3d(*position), name)
        cases.append((volume, points))
    before = scene_state()
    logic = module.LandmarkDetectorLogic()
    reports = []
    path, report = logic.finetune(cases, "hand-mr", "my-hands", steps=2, folds=2,
                                  progress=lambda fraction, message: reports.append((fraction, message)))
    assert path == tmp_path / "models" / "my-hands.pt" and path.is_file()
    assert "| ThumbTip |" in report and "2 folds over 2 cases" in report
    assert model_name_of(path) == "my-hands"
    assert read_metadata(path).landmarks == ("ThumbTip", "IndexTip", "MiddleTip", "RingTip", "LittleTip")
    fractions = [fraction for fraction, _message in reports]  # each optimizer step is reported, in order
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    steps = [message for _fraction, message in reports if "step" in message]
    assert steps == ["Cross-validation fold 1/2, step 1/2", "Cross-validation fold 1/2, step 2/2",
                     "Cross-validation fold 2/2, step 1/2", "Cross-validation fold 2/2, step 2/2",
                     "Fine-tuning on all cases, step 1/2", "Fine-tuning on all cases, step 2/2"]
    assert scene_state() == before
    with pytest.raises(Cancelled):
        logic.finetune(cases, "hand-mr", "other", steps=2, folds=2, shouldCancel=lambda: True)
    assert not (tmp_path / "models" / "other.pt").exists()
