"""The mirror check: paired landmarks, predictions on a flipped canvas, and what "found" means with it.

Two analytic TorchScript models see an off-centre box: one places EdgeR/EdgeL on the box's right/left edges (a
mirror-consistent network), the other puts both 10 canvas pixels right of the centroid (a network that guesses the
side from the place). Only the second must lose its paired points to the mirror check.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from LandmarkDetectorLib import InputError, ModelError, detect_landmarks, load_model
from LandmarkDetectorLib.cli import main
from LandmarkDetectorLib.framing import CanvasSpec
from LandmarkDetectorLib.markups import read_markups
from LandmarkDetectorLib.model import ModelMetadata, save_model
from LandmarkDetectorLib.projection import ProjectedImage, ProjectionConfig, view_pixel_to_ras
from LandmarkDetectorLib.symmetry import mirror_partners
from LandmarkDetectorLib.synthetic.anatomy import BODY_LANDMARKS, HAND_LANDMARKS
from LandmarkDetectorLib.training.data import _mirrored
from LandmarkDetectorLib.volume_io import write_volume

from phantoms import add_box

NAMES = ("Top", "EdgeR", "EdgeL")
SPEC = CanvasSpec(height=64, width=64, pixel_spacing_mm=4.0)
SHIFT_PX = 10.0


def _edges(silhouette: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Leftmost and rightmost body columns, and the centroid row."""
    us = torch.arange(silhouette.shape[2], dtype=silhouette.dtype)
    columns = silhouette.amax(dim=1) > 0.5
    left = torch.where(columns, us, torch.full_like(us, 1e6)).amin(dim=-1)
    right = torch.where(columns, us, torch.full_like(us, -1e6)).amax(dim=-1)
    vs = torch.arange(silhouette.shape[1], dtype=silhouette.dtype)
    v = (silhouette.sum(dim=2) * vs).sum(dim=-1) / silhouette.sum(dim=(1, 2)).clamp(min=1.0)
    return left, right, v


class EdgesModel(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        left, right, v = _edges(x[:, 0])
        centre = (left + right) / 2
        uv = torch.stack([torch.stack([centre, v], -1), torch.stack([left, v], -1), torch.stack([right, v], -1)], 1)
        return uv, torch.zeros_like(uv[..., 0]), torch.full_like(uv[..., 0], 10.0)


class GuessingModel(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        left, right, v = _edges(x[:, 0])
        centre = (left + right) / 2
        guess = torch.stack([centre + 10.0, v], -1)
        uv = torch.stack([torch.stack([centre, v], -1), guess, guess], 1)
        return uv, torch.zeros_like(uv[..., 0]), torch.full_like(uv[..., 0], 10.0)


class UnsureEdgesModel(nn.Module):
    """EdgesModel's points, mirror-consistent, but the midline "Top" almost surely out of view (logit -10)."""

    def __init__(self):
        super().__init__()
        self.edges = EdgesModel()
        self.register_buffer("sign", torch.tensor([-1.0, 1.0, 1.0]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        uv, depth, logits = self.edges(x)
        return uv, depth, logits * self.sign


def _save(tmp_path, module: nn.Module, tolerance_mm: float | None):
    path = tmp_path / f"{type(module).__name__}-{tolerance_mm}.pt"
    metadata = ModelMetadata(name="edges", landmarks=NAMES, canvas=SPEC,
                             projection=ProjectionConfig(table_removal_mm=0.0), mirror_tolerance_mm=tolerance_mm)
    save_model(module, metadata, path)
    return load_model(path)


@pytest.fixture(scope="module")
def box_volume():
    """An off-centre box 60 x 40 x 100 mm in a 3 mm RAS grid (odd sizes)."""
    ijk_to_ras = np.diag([3.0, 3.0, 3.0, 1.0])
    ijk_to_ras[:3, 3] = (-60.0, -45.0, -90.0)
    volume = np.zeros((61, 31, 41), dtype=np.int16) - 1000
    add_box(volume, ijk_to_ras, (-30.0, -20.0, -60.0), (30.0, 20.0, 40.0), 40.0)
    return volume, ijk_to_ras


def test_mirror_partners_pair_right_and_left():
    partners = mirror_partners(BODY_LANDMARKS)
    assert [BODY_LANDMARKS[i] for i in partners] == ["HeadTop", "ShoulderL", "ShoulderR", "MiddleFingerTipL",
                                                     "MiddleFingerTipR", "KneeL", "KneeR", "BigToeL", "BigToeR"]
    assert mirror_partners(HAND_LANDMARKS) is None
    assert mirror_partners(("KneeR", "HeadTop")) is None  # a side without its counterpart is no pair


def test_consistent_network_agrees_with_its_mirror(tmp_path, box_volume):
    single = detect_landmarks(*box_volume, _save(tmp_path, EdgesModel(), None))
    checked = detect_landmarks(*box_volume, _save(tmp_path, EdgesModel(), 5.0))
    assert np.isnan(single.disagreement_mm).all()
    np.testing.assert_allclose(checked.disagreement_mm, 0.0, atol=1e-6)
    np.testing.assert_allclose(checked.points_ras, single.points_ras, atol=1e-6)
    assert checked.found.all()
    # EdgeR on the patient's right (the box's R = +30 mm face), EdgeL on the left (R = -30 mm).
    assert checked.points_ras[1, 0] > 25.0 and checked.points_ras[2, 0] < -25.0


def test_guessing_network_loses_its_paired_points(tmp_path, box_volume):
    unchecked = detect_landmarks(*box_volume, _save(tmp_path, GuessingModel(), None))
    assert unchecked.found.all()
    checked = detect_landmarks(*box_volume, _save(tmp_path, GuessingModel(), 5.0))
    # On the flipped canvas both guesses land 10 px on the other side: 20 px apart once flipped back.
    np.testing.assert_allclose(checked.disagreement_mm, [0.0, 2 * SHIFT_PX * 4.0, 2 * SHIFT_PX * 4.0], atol=1e-4)
    assert checked.found.tolist() == [True, False, False]
    # The point given is the mean of both estimates: the centre, not a side.
    np.testing.assert_allclose(checked.points_ras[1, 0], checked.points_ras[0, 0], atol=1e-4)
    description = checked.to_point_list().points[1].description
    assert "mirror disagreement 80.0 mm" in description and "not found" in description
    loose = detect_landmarks(*box_volume, _save(tmp_path, GuessingModel(), 100.0))
    assert loose.found.all()


def test_a_disagreement_of_exactly_the_tolerance_is_within_it(tmp_path, box_volume):
    at_tolerance = detect_landmarks(*box_volume, _save(tmp_path, GuessingModel(), 2 * SHIFT_PX * 4.0))
    assert at_tolerance.disagreement_mm.tolist() == [0.0, 80.0, 80.0]  # exact: whole pixels of 4 mm
    assert at_tolerance.found.all()


def test_the_mirror_check_only_takes_landmarks_away(tmp_path, box_volume):
    """Agreeing with its mirror does not make a landmark the network places out of view found."""
    checked = detect_landmarks(*box_volume, _save(tmp_path, UnsureEdgesModel(), 5.0))
    np.testing.assert_allclose(checked.disagreement_mm, 0.0, atol=1e-6)
    assert checked.confidence[0] < 0.01 and checked.found.tolist() == [False, True, True]


@pytest.mark.parametrize("override, found", [(None, [True, False, False]), (79.9, [True, False, False]),
                                             (80.0, [True, True, True]), (float("inf"), [True, True, True])])
def test_the_callers_mirror_tolerance_replaces_the_models(tmp_path, box_volume, override, found):
    model = _save(tmp_path, GuessingModel(), 5.0)  # the guesses disagree by 80 mm
    checked = detect_landmarks(*box_volume, model, mirror_tolerance_mm=override)
    assert checked.found.tolist() == found
    # What "found" was decided with, per landmark.
    assert checked.mirror_tolerance_mm.tolist() == [5.0 if override is None else override] * 3
    assert model.metadata.mirror_tolerance_mm == 5.0  # the model itself is left as it was


@pytest.mark.parametrize("override, found", [(None, [True, True, False]), (50.0, [True, False, False])])
def test_a_landmarks_own_mirror_tolerance_replaces_the_models_unless_the_caller_gives_one(tmp_path, box_volume,
                                                                                          override, found):
    model = _save(tmp_path, GuessingModel(), 5.0)  # the guesses disagree by 80 mm
    model.metadata = dataclasses.replace(model.metadata, landmark_mirror_tolerances_mm={"EdgeR": 80.0})
    checked = detect_landmarks(*box_volume, model, mirror_tolerance_mm=override)
    assert checked.found.tolist() == found
    assert checked.mirror_tolerance_mm.tolist() == ([5.0, 80.0, 5.0] if override is None else [override] * 3)


@pytest.mark.parametrize("override", [0.0, -5.0, float("nan")])
def test_a_mirror_tolerance_that_is_not_a_positive_number_is_refused(tmp_path, box_volume, override):
    with pytest.raises(InputError, match="mirror_tolerance_mm must be a positive number of mm"):
        detect_landmarks(*box_volume, _save(tmp_path, GuessingModel(), 5.0), mirror_tolerance_mm=override)


def test_a_mirror_tolerance_for_a_model_without_mirror_check_is_refused(tmp_path, box_volume):
    with pytest.raises(InputError, match="model edges has no mirror check"):
        detect_landmarks(*box_volume, _save(tmp_path, GuessingModel(), None), mirror_tolerance_mm=50.0)


def test_command_line_detect_and_batch_take_the_mirror_tolerance(tmp_path, box_volume, capsys):
    (tmp_path / "in").mkdir()
    write_volume(tmp_path / "in" / "box.nrrd", *box_volume)
    model = ["-m", str(_save(tmp_path, GuessingModel(), 5.0).path), "--device", "cpu"]
    for flags, found in (([], [True, False, False]), (["--mirror-tolerance-mm", "100"], [True, True, True])):
        out = tmp_path / f"box{len(flags)}.mrk.json"
        assert main(["detect", str(tmp_path / "in" / "box.nrrd"), "-o", str(out), *model, *flags]) == 0
        assert [p.status == "defined" for p in read_markups(out).points] == found
        printed = capsys.readouterr().out
        assert ("Not found because the network's estimates on the volume and on its left-right mirror were too far "
                "apart: EdgeR (80.0 > 5 mm), EdgeL (80.0 > 5 mm); --mirror-tolerance-mm loosens this"
                in printed) == (not flags), printed
        assert "mirror mm" in printed.splitlines()[0] and "80.0" in printed.splitlines()[2]
        batch = tmp_path / f"batch{len(flags)}"
        assert main(["batch", str(tmp_path / "in"), "-o", str(batch), *model, *flags]) == 0
        assert [p.status == "defined" for p in read_markups(batch / "box.mrk.json").points] == found
        capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(tmp_path / "in" / "box.nrrd"), "-o", str(out), *model, "--mirror-tolerance-mm", "0"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("tolerance", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_mirror_tolerance_is_refused(tolerance):
    metadata = ModelMetadata(name="m", landmarks=NAMES, canvas=SPEC, projection=ProjectionConfig(),
                             mirror_tolerance_mm=1.0)
    text = metadata.to_json().replace('"mirror_tolerance_mm": 1.0', f'"mirror_tolerance_mm": {json.dumps(tolerance)}')
    with pytest.raises(ModelError, match="mirror_tolerance_mm"):
        ModelMetadata.from_json(text)


def test_mirror_tolerance_round_trips_and_defaults_to_none():
    metadata = ModelMetadata(name="m", landmarks=NAMES, canvas=SPEC, projection=ProjectionConfig(),
                             mirror_tolerance_mm=12.5)
    assert ModelMetadata.from_json(metadata.to_json()).mirror_tolerance_mm == 12.5
    values = json.loads(metadata.to_json())
    del values["mirror_tolerance_mm"]  # a bundle from before the mirror check
    assert ModelMetadata.from_json(json.dumps(values)).mirror_tolerance_mm is None
    unchecked = dataclasses.replace(metadata, mirror_tolerance_mm=None).to_json()
    assert json.loads(unchecked)["mirror_tolerance_mm"] is None


def test_mirrored_training_image_swaps_sides_exactly():
    rng = np.random.default_rng(3)
    silhouette = rng.random((20, 13)) > 0.5
    depth = np.where(silhouette, rng.uniform(0, 100, silhouette.shape), np.nan).astype(np.float32)
    grid = view_pixel_to_ras("ap", np.array([40.0, 10.0, 300.0]), (7.0, 7.0))
    image = ProjectedImage(silhouette=silhouette, depth_mm=depth, pixel_to_ras=grid, threshold=0.5, view="ap")
    points = rng.uniform(-50, 50, (len(BODY_LANDMARKS), 3))
    in_view = rng.random(len(BODY_LANDMARKS)) > 0.3
    partners = mirror_partners(BODY_LANDMARKS)
    flipped, mirrored, mirrored_in_view = _mirrored(image, points, in_view, partners)
    np.testing.assert_array_equal(flipped.silhouette, silhouette[:, ::-1])
    uvd, uvd_mirrored = image.ras_to_uvd(points), flipped.ras_to_uvd(mirrored)
    np.testing.assert_allclose(uvd_mirrored[:, 0], 12 - uvd[partners, 0], atol=1e-9)
    np.testing.assert_allclose(uvd_mirrored[:, 1:], uvd[partners, 1:], atol=1e-9)
    np.testing.assert_array_equal(mirrored_in_view, in_view[partners])
    again = _mirrored(flipped, mirrored, mirrored_in_view, partners)
    np.testing.assert_allclose(again[1], points, atol=1e-9)
    np.testing.assert_array_equal(again[0].depth_mm, depth)


def test_network_estimates_average_the_flipped_pass_and_measure_their_distance_in_mm():
    # A stand-in network that answers fixed numbers for the canvas and for its mirror (KneeR and KneeL swapped there),
    # on a 10-pixel-wide canvas of 2 x 3 mm pixels whose depth is normalized by 10 mm.
    from types import SimpleNamespace

    from LandmarkDetectorLib.pipeline import network_estimates

    inputs = np.random.default_rng(0).normal(size=(3, 4, 10)).astype(np.float32)
    seen = []

    def predict(batch):
        seen.append(batch)
        uv = np.array([[[4.5, 1.0], [2.0, 5.0], [7.0, 5.0]], [[4.5, 1.0], [2.0, 5.5], [7.0, 5.0]]])
        return uv, np.array([[0.1, 0.2, 0.3], [0.1, 0.5, 0.2]]), np.array([[0.9, 0.8, 0.7], [0.9, 0.6, 0.5]])

    model = SimpleNamespace(metadata=SimpleNamespace(landmarks=("HeadTop", "KneeR", "KneeL"), mirror_tolerance_mm=9.0,
                                                     depth_fractions={}), predict=predict)
    canvas = SimpleNamespace(network_input=lambda: inputs, in_field=np.ones((4, 10), bool),
                             image=SimpleNamespace(pixel_spacing_mm=(2.0, 3.0), depth_std_mm=10.0))
    uv, depth, probability, disagreement, uv_views, depth_views = network_estimates(model, canvas)
    np.testing.assert_array_equal(seen[0], np.stack([inputs, inputs[..., ::-1]]))  # the second is the mirror
    # Mirrored KneeL (the first's KneeR) at u 9 - 2 = 7, v 5.5; KneeR from the mirrored KneeL at 9 - 7 = 2, v 5.
    np.testing.assert_allclose(uv, [[4.5, 1.0], [2.0, 5.0], [7.0, 5.25]])
    np.testing.assert_allclose(depth, [0.1, 0.2, 0.4])
    np.testing.assert_allclose(probability, [0.9, 0.65, 0.65])
    # KneeL: 0.5 px x 3 mm apart in v and 0.2 x 10 mm in depth: sqrt(1.5^2 + 2^2) = 2.5 mm.
    np.testing.assert_allclose(disagreement, [0.0, 0.0, 2.5])
    # Each view on its own, the mirror's with its labels swapped back (for the limb tips).
    np.testing.assert_allclose(uv_views, [[[4.5, 1.0], [2.0, 5.0], [7.0, 5.0]], [[4.5, 1.0], [2.0, 5.0], [7.0, 5.5]]])
    np.testing.assert_allclose(depth_views, [[0.1, 0.2, 0.3], [0.1, 0.2, 0.5]])
    model.metadata.depth_fractions = {"KneeL": 0.5}  # its depth is read from the volume: the image plane only
    np.testing.assert_allclose(network_estimates(model, canvas)[3], [0.0, 0.0, 1.5])
    model.metadata.mirror_tolerance_mm = None  # no mirror check: one pass, no disagreement
    single = network_estimates(model, canvas)
    assert np.isnan(single.disagreement_mm).all() and seen[-1].shape[0] == 1
    np.testing.assert_allclose(single.uv_views, [[[4.5, 1.0], [2.0, 5.0], [7.0, 5.0]]])
