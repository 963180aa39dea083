"""The paper's experiment (training/experiment.py): folds, target domain, baselines, and a tiny run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from LandmarkDetectorLib.training import experiment, finetune
from LandmarkDetectorLib.training.data import Batch
from LandmarkDetectorLib.training.evaluate import Reference
from LandmarkDetectorLib.training.experiment import (
    CONDITIONS,
    ExperimentConfig,
    forest_prediction,
    results_markdown,
    run_experiment,
    target_body,
    target_hand,
)
from LandmarkDetectorLib.training.finetune import FinetuneConfig, cross_validation_folds

pytest.importorskip("sklearn")


@pytest.mark.parametrize(("count", "folds"), [(20, 0), (18, 3), (5, 2), (3, 7)])
def test_each_case_is_held_out_once_and_never_trains_its_fold(count, folds):
    splits = cross_validation_folds(count, folds, seed=4)
    assert len(splits) == (count if folds == 0 else min(folds, count))
    held_out = [i for _, held in splits for i in held]
    assert sorted(held_out) == list(range(count))
    for train, held in splits:
        assert not set(train) & set(held)
        assert sorted(train + held) == list(range(count))


def test_target_domain_is_shifted_from_the_pretraining_distribution():
    rng = np.random.default_rng(0)
    bodies = [target_body(rng) for _ in range(40)]
    assert all(pose.arms == "down" and set(pose.hand_place) <= {"beside", "thigh"} for _, pose in bodies)
    assert min(min(pose.leg_spread_deg) for _, pose in bodies) >= 4.0
    assert 0.5 < np.mean([params.female for params, _ in bodies]) < 0.9
    hands = [target_hand(rng) for _ in range(40)]
    assert min(h.thumb_abduction_deg for h in hands) >= 35.0 and min(h.spread_deg for h in hands) >= 6.0


def _batch(uv, depth, located):
    m, n = np.shape(depth)
    inputs = np.zeros((m, 3, 16, 16), np.float32)
    inputs[np.arange(m), 0, np.arange(m), 0] = 1.0  # sample i: one body pixel in row i
    return Batch(inputs, np.asarray(uv, np.float32), np.asarray(depth, np.float32), np.asarray(located),
                 np.ones((m, n), bool), np.asarray(located), np.ones(m, np.float32))


def test_nearest_neighbours_skip_samples_that_do_not_locate_the_landmark():
    located = [[True, False], [True, True], [True, True], [False, True]]
    data = _batch(np.arange(16.0).reshape(4, 2, 2), np.arange(8.0).reshape(4, 2), located)
    reference = Reference.from_batch(data)
    uv, depth = reference.nearest(data.inputs[0], k=2)  # by distance (ties in order): samples 0, 1, 2, 3
    assert uv[0] == pytest.approx((data.uv[0, 0] + data.uv[1, 0]) / 2)
    assert uv[1] == pytest.approx((data.uv[1, 1] + data.uv[2, 1]) / 2)  # sample 0 does not locate landmark 1
    assert depth[1] == pytest.approx(4.0)
    assert reference.mean_depth == pytest.approx([2.0, 5.0])


def test_forest_gives_no_estimate_for_a_landmark_no_training_case_locates():
    data = _batch(np.ones((4, 2, 2)), np.zeros((4, 2)), [[True, False]] * 4)
    prediction = forest_prediction(data, data.inputs[:2], trees=3, seed=0, threads=1)
    assert prediction.uv[:, 0] == pytest.approx(np.ones((2, 2)))
    assert np.isnan(prediction.uv[:, 1]).all() and np.isnan(prediction.depth[:, 1]).all()


def test_tiny_experiment_scores_every_condition_and_never_trains_on_the_held_out_case(monkeypatch):
    trained_on: list[set[str]] = []
    real_fit = finetune.fit_network

    def recording_fit(network, loss, spec, names, cases, *args, **kwargs):
        trained_on.append({case.name for case in cases})
        return real_fit(network, loss, spec, names, cases, *args, **kwargs)

    monkeypatch.setattr(finetune, "fit_network", recording_fit)  # CNN(fine-tuned), through finetune.finetuned_network
    monkeypatch.setattr(experiment, "fit_network", recording_fit)  # CNN(target only)
    steps = FinetuneConfig(steps=2, batch_size=2, decay_after=1, threads=1)
    config = ExperimentConfig(anatomy="body", model="wholebody-ct", cases=4, folds=2, seed=5, reference_count=16,
                              reference_seed=6, finetune=steps, scratch=steps, forest_trees=3, forest_copies=2,
                              threads=1)
    reports: list[tuple[float, str]] = []
    result = run_experiment(config, progress=lambda fraction, message: reports.append((fraction, message)))

    assert len(result.folds) == 2 and len(trained_on) == 4  # two networks per fold
    for fold, (training, held_out) in enumerate(result.folds):
        assert not set(training) & set(held_out)
        assert trained_on[2 * fold] == trained_on[2 * fold + 1] == set(training)
    assert sorted(c for _, held in result.folds for c in held) == sorted({c.case for c in result.comparisons})
    stats = result.statistics()
    assert list(stats) == list(CONDITIONS)
    assert len(result.comparisons) == len(CONDITIONS) * 4 * 9
    for condition in CONDITIONS:
        assert stats[condition]["all"]["n"] > 0 and np.isfinite(stats[condition]["all"]["mean_mm"])
    json.dumps(result.to_dict(), allow_nan=False)
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "fold 2/2, training step 4/4" in [message for _, message in reports]  # 2 + 2 steps per fold
    table = results_markdown(result)
    assert "| CNN(fine-tuned) |" in table and "2-fold cross-validation" in table
