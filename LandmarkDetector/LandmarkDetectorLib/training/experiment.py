"""The paper's comparison of training regimes (Riegler et al., Fig. 2 and 4) on a target domain of our own.

The paper's "real" data (20 whole-body CTs with leave-one-out, 132 hand MRs with 3-fold cross-validation) is not
available. Its stand-in is a *target domain*: synthetic volumes made through the full volume path (CT table, noise,
patient positions, file orientations, field-of-view cuts; MR contrast, bias field, noise, oblique scans) of bodies
and hands drawn from a deliberately different shape and pose distribution than the pretraining renders
(``target_body``, ``target_hand``).

Conditions, scored on the held-out cases of each fold (the paper's names in brackets):

- NN(syn): mean annotation of the 3 synthetic training canvases with the nearest silhouettes;
- NN(target) [NN(CT), NN(MR)]: the same among the fold's training cases;
- CNN(syn): the bundled model as it is;
- CNN(target only) [CNN(CT), CNN(MR)]: the bundled model's network trained from scratch on the fold's training cases;
- CNN(fine-tuned) [CNN(ft)]: the bundled model fine-tuned on them;
- RF: a random regression forest from downsampled silhouette and depth canvases to landmark positions and depths,
  trained on them;
- mean depth: CNN(fine-tuned)'s 2D positions with each landmark's mean depth over the fold's training cases (the
  baseline of the paper's Fig. 4 for the depth head).

Every landmark in view is scored by every condition, also where a CNN reports it not found (the paper scores every
landmark); the CNNs' not-found decisions are counted separately. Errors are measured on the canvas the networks
see: in-plane from canvas pixels, depth from normalized depth, both in mm.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ..errors import InputError
from ..evaluation import Comparison, statistics
from ..model import LandmarkModel, load_model
from ..pipeline import landmark_found, model_projection
from ..progress import ProgressCallback, report
from ..synthetic.body import BodyParams, BodyPose, build_body, sample_body, sample_pose
from ..synthetic.dataset import ground_truth
from ..synthetic.hand import HandParams, build_hand, sample_hand
from ..synthetic.scan import CTScanConfig, MRScanConfig, SyntheticScan, ct_scan, mr_hand_scan
from .data import Batch, SyntheticSource
from .evaluate import Reference
from .finetune import (
    Case,
    FinetuneConfig,
    StepCallback,
    case_samples,
    cross_validation_folds,
    finetuned_network,
    fit_network,
)
from .train import TrainConfig, build_network, predict_batches

NN_SYN, NN_TARGET, CNN_SYN = "NN(syn)", "NN(target)", "CNN(syn)"
CNN_TARGET, CNN_FINETUNED, FOREST, MEAN_DEPTH = "CNN(target only)", "CNN(fine-tuned)", "RF", "mean depth"
CONDITIONS = (NN_SYN, NN_TARGET, CNN_SYN, CNN_TARGET, CNN_FINETUNED, FOREST, MEAN_DEPTH)
"""Condition names, in table and plot order."""
DETECTING = (CNN_SYN, CNN_TARGET, CNN_FINETUNED)
"""Conditions that decide whether a landmark is in view (the others report every landmark)."""

TARGET_CT = CTScanConfig(in_plane_mm=(2.5, 3.5), slice_mm=(2.0, 3.0), fov_mm=(560.0, 650.0), p_cut=0.2)
"""Target-domain CT scans: finer slices, a wider transverse field of view (whole-body protocol; spread legs need
it) and fewer longitudinal cuts than the pretraining volumes."""
TARGET_MR = MRScanConfig(in_plane_mm=(1.0, 1.4), slice_mm=(1.5, 2.5), p_oblique=0.5)
"""Target-domain hand MR scans: coarser and more often oblique than the pretraining volumes."""
FOREST_BLOCK_PX = 4


def target_body(rng: np.random.Generator) -> tuple[BodyParams, BodyPose]:
    """Shape and pose of a body of the target domain, after the paper's CT cohort (14 of 20 women, hands close
    to the body, slightly spread legs, feet in any position).

    Compared with ``sample_body``/``sample_pose``: 70% women, 3-5 cm shorter, leaner (BMI about 23 rather than
    26), arms always down with the hands beside or on the thighs (never raised, on the belly or the groin), legs
    spread 4-10 degrees (pretraining 0-8), feet turned out 15-60 degrees (5-45) and pointed 30-70 degrees (15-50),
    a higher head rest.
    """
    female = bool(rng.random() < 0.7)
    height_mm = float(np.clip(rng.normal(1600.0 if female else 1740.0, 60.0), 1450.0, 2050.0))
    bmi = float(np.clip(np.exp(rng.normal(np.log(23.0), 0.15)), 16.0, 45.0))
    params = sample_body(rng, female=female, height_mm=height_mm, bmi=bmi)

    def pair(low: float, high: float) -> tuple[float, float]:
        return float(rng.uniform(low, high)), float(rng.uniform(low, high))

    place = str(rng.choice(["beside", "thigh"]))
    pose = dataclasses.replace(
        sample_pose(rng), arms="down", hand_place=(place, place), abduction_deg=pair(0.0, 8.0),
        leg_spread_deg=pair(4.0, 10.0), foot_rotation_deg=pair(15.0, 60.0), plantar_flex_deg=pair(30.0, 70.0),
        head_lift_mm=float(rng.uniform(30.0, 70.0)))
    return params, pose


def target_hand(rng: np.random.Generator) -> HandParams:
    """Shape and pose of a hand of the target domain, after the paper's MR cohort (young men, a sandbag on the
    flat hand, fingers slightly spread, the thumb varying most).

    Compared with ``sample_hand``: men only, fingers spread 6-16 degrees apart (pretraining 1-12), the thumb
    abducted 20 degrees further, fingers flattened to a third of their flexion, the hand rolled twice as far.
    """
    params = sample_hand(rng, female=False)
    return dataclasses.replace(
        params, spread_deg=float(rng.uniform(6.0, 16.0)), thumb_abduction_deg=params.thumb_abduction_deg + 20.0,
        flexion_deg=tuple(f / 3.0 for f in params.flexion_deg), roll_deg=2.0 * params.roll_deg)


def target_scan(anatomy: str, seed: int, index: int) -> SyntheticScan:
    """Case ``index`` of the target domain of ``seed``: a CT-like body or an MR-like left hand."""
    rng = np.random.default_rng([seed, index])
    if anatomy == "body":
        return ct_scan(build_body(*target_body(rng)), rng, TARGET_CT)
    return mr_hand_scan(build_hand(target_hand(rng)), rng, TARGET_MR)


@dataclass(frozen=True)
class ExperimentConfig:
    """One anatomy's experiment.

    Attributes:
        anatomy: "body" or "hand".
        model: the pretrained model (bundled name or path).
        cases: target-domain cases.
        folds: cross-validation folds; 0 means leave-one-out.
        seed: seed of the target-domain cases, the folds and the trainings.
        reference_count: synthetic canvases searched by NN(syn).
        reference_seed: their seed.
        finetune: recipe of CNN(fine-tuned).
        scratch: recipe of CNN(target only) (its lr suits a fresh network).
        forest_trees: trees of RF.
        forest_copies: jittered framings of each training case that RF learns from.
        threads: torch and forest CPU threads.
    """

    anatomy: str
    model: str
    cases: int
    folds: int
    seed: int
    reference_count: int
    reference_seed: int
    finetune: FinetuneConfig
    scratch: FinetuneConfig
    forest_trees: int = 100
    forest_copies: int = 8
    threads: int = 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Prediction:
    """One condition's output for a batch of canvases: uv (B, N, 2) canvas pixels, normalized depth (B, N) and
    found (B, N)."""

    uv: NDArray[np.float64]
    depth: NDArray[np.float64]
    found: NDArray[np.bool_]


@dataclass(frozen=True)
class ExperimentResult:
    """What one anatomy's experiment measured.

    Attributes:
        config: the experiment.
        landmarks: landmark names.
        folds: (training, held-out) case names of each fold.
        comparisons: every known landmark of every held-out case under every condition.
        seconds: wall time.
    """

    config: ExperimentConfig
    landmarks: tuple[str, ...]
    folds: list[tuple[list[str], list[str]]]
    comparisons: list[Comparison]
    seconds: float

    def statistics(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per condition and landmark (and "all"): ``evaluation.statistics``."""
        return statistics(self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: config, folds, statistics and every comparison (NaN as None)."""
        rows = [{**c.__dict__, **{k: None if not np.isfinite(getattr(c, k)) else getattr(c, k)
                                  for k in ("error_mm", "in_plane_mm", "depth_mm")},
                 "offset_ras_mm": list(c.offset_ras_mm) if np.isfinite(c.offset_ras_mm).all() else None}
                for c in self.comparisons]
        return {"config": self.config.to_dict(), "landmarks": list(self.landmarks), "seconds": self.seconds,
                "folds": [{"training": t, "held_out": h} for t, h in self.folds],
                "statistics": self.statistics(), "comparisons": rows}


def target_cases(config: ExperimentConfig, model: LandmarkModel) -> list[Case]:
    """The target-domain volumes, projected as the model projects them, with their ground truth."""
    cases = []
    for index in range(config.cases):
        scan = target_scan(config.anatomy, config.seed, index)
        name = f"{config.anatomy}_target_s{config.seed}_{index:04d}"
        image = model_projection(scan.voxels_kji, scan.ijk_to_ras, model.metadata.projection, model.metadata.canvas)
        cases.append(Case(name, image, ground_truth(scan, name)))
    return cases


def nearest_neighbour(reference: Reference, inputs: NDArray[np.float32]) -> Prediction:
    """NN baseline: each canvas's landmarks from its nearest reference canvases; every landmark reported found."""
    uv, depth = zip(*(reference.nearest(canvas) for canvas in inputs), strict=True)
    return Prediction(np.array(uv), np.array(depth), np.ones(np.shape(depth), dtype=bool))


def forest_features(inputs: NDArray[np.float32]) -> NDArray[np.float32]:
    """Silhouette and normalized depth averaged over FOREST_BLOCK_PX-pixel blocks, flattened: (B, features)."""
    b, _, h, w = inputs.shape
    k = FOREST_BLOCK_PX
    return inputs[:, :2].reshape(b, 2, h // k, k, w // k, k).mean(axis=(3, 5)).reshape(b, -1)


def forest_prediction(train: Batch, inputs: NDArray[np.float32], trees: int, seed: int, threads: int) -> Prediction:
    """RF baseline: a random regression forest from ``forest_features`` to every landmark's (u, v, depth), fitted
    on ``train``. A landmark not located in a training sample takes its mean over the others as the target there;
    one located in none is predicted NaN (no estimate)."""
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError:
        raise InputError("the RF baseline needs scikit-learn: pip install 'landmark-detector[experiment]'") from None
    targets = np.concatenate([train.uv, train.depth[..., None]], axis=-1)  # (M, N, 3)
    located = train.located[..., None].repeat(3, axis=-1)
    means = np.array([targets[train.located[:, n], n].mean(axis=0) if train.located[:, n].any() else [np.nan] * 3
                      for n in range(targets.shape[1])])
    targets = np.where(located, targets, np.nan_to_num(means))
    forest = RandomForestRegressor(n_estimators=trees, max_features=0.3, random_state=seed, n_jobs=threads)
    forest.fit(forest_features(train.inputs), targets.reshape(len(targets), -1))
    out = np.where(np.isnan(means), np.nan, forest.predict(forest_features(inputs)).reshape(len(inputs), -1, 3))
    return Prediction(out[..., :2], out[..., 2], np.ones(out.shape[:2], dtype=bool))


def network_prediction(network: torch.nn.Module | LandmarkModel, inputs: NDArray[np.float32],
                       threshold: float | NDArray[np.float64]) -> Prediction:
    """A CNN's landmarks; found as detection decides (confident and inside the scanned field)."""
    if isinstance(network, LandmarkModel):
        uv, depth, probability = network.predict(inputs)
    else:
        uv, depth, probability = predict_batches(network, inputs)
    return Prediction(uv, depth, landmark_found(uv, probability, inputs[:, 2] > 0.5, threshold))


def from_scratch(model: LandmarkModel, train: list[Case], config: FinetuneConfig, rng: np.random.Generator,
                 on_step: StepCallback | None = None) -> torch.nn.Module:
    """CNN(target only): the model's network, freshly initialized, trained on the target cases alone."""
    train_config = TrainConfig.from_dict(model.metadata.training.get("config", {}))
    names = model.metadata.landmarks
    network = build_network(train_config, len(names))
    return fit_network(network, train_config.loss, model.metadata.canvas, names, train, config, rng,
                       freeze_batch_norm=False, on_step=on_step)


def comparisons(condition: str, cases: list[Case], names: tuple[str, ...], truth: Batch, prediction: Prediction,
                pixel_spacing_mm: float) -> list[Comparison]:
    """Errors of one condition on held-out cases: every known landmark, with an error where it is in view."""
    in_plane = np.linalg.norm(prediction.uv - truth.uv, axis=-1) * pixel_spacing_mm
    depth = np.abs(prediction.depth - truth.depth) * truth.depth_std_mm[:, None]
    error = np.hypot(in_plane, depth)
    rows = []
    for b, case in enumerate(cases):
        for n, name in enumerate(names):
            if not truth.known[b, n]:
                continue
            seen = bool(truth.in_view[b, n])
            values = (float(error[b, n]), float(in_plane[b, n]), float(depth[b, n])) if seen else (np.nan,) * 3
            rows.append(Comparison(condition, case.name, name, seen, bool(prediction.found[b, n]), *values))
    return rows


def run_fold(model: LandmarkModel, config: ExperimentConfig, train: list[Case], held: list[Case],
             reference: Reference, rng: np.random.Generator, on_step: StepCallback | None = None) -> list[Comparison]:
    """Every condition trained on ``train`` (where it trains) and scored on ``held``.

    Args:
        on_step: called with (steps done, steps) over the fold's two network trainings.
    """
    names, spec = model.metadata.landmarks, model.metadata.canvas
    threshold = model.metadata.found_rules()[0]
    truth = case_samples(held, names, spec, None, 0.0)
    target_reference = Reference.from_batch(case_samples(train, names, spec, None, 0.0))
    total = config.finetune.steps + config.scratch.steps

    def after(first: int) -> StepCallback | None:
        return None if on_step is None else lambda done, _steps: on_step(first + done, total)

    finetuned = network_prediction(finetuned_network(model, names, train, config.finetune, rng, None, after(0)),
                                   truth.inputs, threshold)
    scratch = from_scratch(model, train, config.scratch, rng, after(config.finetune.steps))
    forest_train = case_samples(train * config.forest_copies, names, spec, rng, config.finetune.jitter_px)
    predictions = {
        NN_SYN: nearest_neighbour(reference, truth.inputs),
        NN_TARGET: nearest_neighbour(target_reference, truth.inputs),
        CNN_SYN: network_prediction(model, truth.inputs, threshold),
        CNN_TARGET: network_prediction(scratch, truth.inputs, threshold),
        CNN_FINETUNED: finetuned,
        FOREST: forest_prediction(forest_train, truth.inputs, config.forest_trees, int(rng.integers(2**31)),
                                  config.threads),
        MEAN_DEPTH: Prediction(finetuned.uv, np.broadcast_to(target_reference.mean_depth, finetuned.depth.shape),
                               finetuned.found),
    }
    return [row for condition in CONDITIONS
            for row in comparisons(condition, held, names, truth, predictions[condition], spec.pixel_spacing_mm)]


def run_experiment(config: ExperimentConfig, progress: ProgressCallback | None = None) -> ExperimentResult:
    """Cross-validate every condition over the target-domain cases.

    Args:
        config: the experiment.
        progress: called with (fraction, message); the trainings take nearly all the time, and each of their
            optimizer steps is reported.
    Returns:
        The comparisons of every held-out case, and which cases trained each fold.
    """
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    model = load_model(config.model)
    report(progress, 0.0, "Making the target-domain volumes")
    cases = target_cases(config, model)
    report(progress, 0.03, "Rendering the synthetic reference of NN(syn)")
    reference = Reference.generate(SyntheticSource(config.anatomy, model.metadata.canvas), config.reference_count,
                                   config.reference_seed)
    splits = cross_validation_folds(len(cases), config.folds, config.seed)
    rng = np.random.default_rng([config.seed, 7])
    rows: list[Comparison] = []
    folds = []
    for fold, (train_indices, held_indices) in enumerate(splits):
        train, held = [cases[i] for i in train_indices], [cases[i] for i in held_indices]
        rows += run_fold(model, config, train, held, reference, rng, _fold_progress(progress, fold, len(splits)))
        folds.append(([c.name for c in train], [c.name for c in held]))
    report(progress, 1.0, "Done")
    return ExperimentResult(config, model.metadata.landmarks, folds, rows, time.perf_counter() - start)


def _fold_progress(progress: ProgressCallback | None, fold: int, folds: int) -> StepCallback:
    """Training steps of one fold as overall progress (the folds share 0.05-1.0)."""
    return lambda done, steps: report(progress, 0.05 + 0.95 * (fold + done / steps) / folds,
                                      f"fold {fold + 1}/{folds}, training step {done}/{steps}")


def _cell(row: dict[str, Any], keys: tuple[str, ...]) -> str:
    return " / ".join(f"{row[k]:.1f}" for k in keys) if row.get("n") else "-"


def results_markdown(result: ExperimentResult) -> str:
    """Tables of one anatomy: conditions over all landmarks, per landmark, and the depth errors (mm)."""
    stats = result.statistics()
    conditions = [c for c in CONDITIONS if c in stats]
    config = result.config
    scheme = "leave-one-out" if config.folds == 0 else f"{len(result.folds)}-fold cross-validation"
    lines = [f"### {config.anatomy}: {config.cases} target-domain cases, {scheme}, model `{config.model}`", "",
             "| condition | n | mean | std | median | p95 | in-plane | depth | in view, not found "
             "| out of view, found |", "|---" * 10 + "|"]
    for condition in conditions:
        e = stats[condition]["all"]
        detection = ([f"{e['not_found']}/{e['in_view']}", f"{e['wrongly_found']}/{e['out_of_view']}"]
                     if condition in DETECTING else ["-", "-"])
        numbers = [f"{e[k]:.1f}" for k in ("mean_mm", "std_mm", "median_mm", "p95_mm", "mean_in_plane_mm",
                                           "mean_depth_mm")]
        lines.append(f"| {condition} | {e['n']} | " + " | ".join(numbers + detection) + " |")
    lines += ["", "3D error per landmark, mean / median / p95 (mm):", "",
              "| landmark | " + " | ".join(conditions) + " |", "|---" * (len(conditions) + 1) + "|"]
    for name in (*result.landmarks, "all"):
        cells = [_cell(stats[c].get(name, {}), ("mean_mm", "median_mm", "p95_mm")) for c in conditions]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    depth_conditions = [c for c in (CNN_SYN, CNN_TARGET, CNN_FINETUNED, MEAN_DEPTH) if c in stats]
    lines += ["", "Depth error per landmark (anterior-posterior), mean (mm): the depth heads against the mean "
              "depth of the training cases.", "",
              "| landmark | " + " | ".join(depth_conditions) + " |", "|---" * (len(depth_conditions) + 1) + "|"]
    for name in (*result.landmarks, "all"):
        cells = [_cell(stats[c].get(name, {}), ("mean_depth_mm",)) for c in depth_conditions]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
