"""Fine-tuning a model on a user's annotated volumes, with k-fold or leave-one-out cross-validation.

A case is a volume file (or DICOM folder) with a landmark file of the same name beside it (``case.nii.gz`` +
``case.mrk.json``, ``.fcsv`` or ``.csv``). Landmark labels are matched to the model's names; missing ones are
allowed. With other landmark names than the model's, a new model is trained for them, starting from the
pretrained network's features (its landmark-specific heads are re-initialized).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ModelError
from ..fileio import atomic_open
from ..framing import CanvasSpec
from ..markups import PointList, read_markups
from ..model import LandmarkModel, load_model
from ..pipeline import framed, landmark_found, model_projection
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from ..projection import ProjectedImage
from ..volume_io import case_name, is_volume_path, read_volume
from .data import Batch, annotated_sample
from .losses import LossWeights, landmark_loss
from .train import TrainConfig, build_network, export, predict_batches, to_tensors

logger = logging.getLogger(__name__)

LANDMARK_SUFFIXES = (".mrk.json", ".fcsv", ".csv", ".json")

StepCallback = Callable[[int, int], None]
"""Called with (optimizer steps done, steps in this training)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning recipe.

    Attributes:
        steps: optimizer steps per model (per fold, and for the final model).
        batch_size: samples per step (cases are repeated with framing jitter).
        lr: AdamW learning rate; multiplied by 0.1 after ``decay_after`` steps (as the paper does).
        decay_after: step of the one learning-rate decay.
        folds: number of cross-validation folds; 0 means leave-one-out.
        jitter_px: random canvas shift, canvas pixels.
        seed: makes the run repeatable.
        threads: torch CPU threads.
    """

    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-4
    decay_after: int = 200
    folds: int = 5
    jitter_px: float = 2.0
    seed: int = 0
    threads: int = 2


@dataclass(frozen=True)
class Case:
    """An annotated volume, projected once as the model needs it."""

    name: str
    image: ProjectedImage
    points: PointList


def find_cases(folder: str | Path) -> list[tuple[Path, Path]]:
    """(volume, landmark file) pairs of a folder, matched by name; volumes without landmarks are skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give a folder of volumes with same-named landmark files.")
    pairs = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name.lower().endswith(LANDMARK_SUFFIXES) or not is_volume_path(entry):
            continue
        stem = case_name(entry)
        marks = next((root / f"{stem}{s}" for s in LANDMARK_SUFFIXES if (root / f"{stem}{s}").is_file()), None)
        if marks is None:
            logger.warning("%s has no landmark file (%s.mrk.json / .fcsv / .csv); skipped.", entry.name, stem)
            continue
        pairs.append((entry, marks))
    return pairs


def case_samples(cases: list[Case], names: tuple[str, ...], spec: CanvasSpec, rng: np.random.Generator | None,
                 jitter_px: float) -> Batch:
    """The cases' canvases and targets, framed with a random offset of up to ``jitter_px`` when ``rng`` is given."""
    return Batch.stack([annotated_sample(framed(case.image, spec, None if rng is None else
                                                rng.uniform(-jitter_px, jitter_px, 2)), case.points, names)
                        for case in cases])


def trainable_network(model: LandmarkModel, names: tuple[str, ...]) -> tuple[torch.nn.Module, TrainConfig]:
    """An eager, trainable copy of the bundle's network (heads re-initialized when the names differ)."""
    config = TrainConfig.from_dict(model.metadata.training.get("config", {}))
    network = build_network(config, len(names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pretrained = torch.jit.load(str(model.path), map_location="cpu").state_dict()  # loaded models are frozen
    own = network.state_dict()
    usable = {k: v for k, v in pretrained.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelError(f"{model.path}: none of its weights fit a {config.architecture} network; fine-tuning "
                         "needs a model trained by LandmarkDetector.")
    network.load_state_dict(usable, strict=False)
    if len(usable) < len(own):
        logger.info("re-initialized %d landmark-specific tensors for %d landmarks", len(own) - len(usable), len(names))
    return network, config


def fit_network(network: torch.nn.Module, loss: LossWeights, spec: CanvasSpec, names: tuple[str, ...],
                cases: list[Case], config: FinetuneConfig, rng: np.random.Generator, *, freeze_batch_norm: bool = True,
                should_cancel: CancelCheck | None = None, on_step: StepCallback | None = None) -> torch.nn.Module:
    """Train a network on annotated cases (random cases with framing jitter each step); returns it in eval mode.

    Args:
        network: a pretrained copy (``trainable_network``) or a fresh one (``build_network``).
        loss: loss weights of its training.
        spec: its canvas.
        names: its landmark names, in output order.
        freeze_batch_norm: keep the batch norm statistics of the pretraining (a few cases are too few to
            re-estimate them); False for a network trained from scratch.
        on_step: called with (steps done, steps) after each optimizer step.
    """
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=1e-4)
    for step in range(config.steps):
        check_cancel(should_cancel)
        if step == config.decay_after:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * 0.1
        chosen = [cases[i] for i in rng.integers(0, len(cases), config.batch_size)]
        inputs, batch_targets = to_tensors(case_samples(chosen, names, spec, rng, config.jitter_px))
        network.train()
        if freeze_batch_norm:
            for module in network.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()
        total, _ = landmark_loss(network, inputs, batch_targets, (spec.height, spec.width), loss)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step + 1, config.steps)
    return network.eval()


def finetuned_network(model: LandmarkModel, names: tuple[str, ...], cases: list[Case], config: FinetuneConfig,
                      rng: np.random.Generator, should_cancel: CancelCheck | None,
                      on_step: StepCallback | None = None) -> torch.nn.Module:
    """``model``'s network (landmark heads re-initialized for other names) fine-tuned on ``cases``."""
    network, train_config = trainable_network(model, names)
    return fit_network(network, train_config.loss, model.metadata.canvas, names, cases, config, rng,
                       should_cancel=should_cancel, on_step=on_step)


def cross_validation_folds(count: int, folds: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """(training, held-out) case indices of each fold; ``folds`` 0 means leave-one-out.

    Cases are shuffled by ``seed`` and dealt to the folds in turn; each case is held out exactly once and never
    trains the fold that holds it out.
    """
    folds = count if folds == 0 else min(folds, count)
    order = np.random.default_rng(seed).permutation(count)
    out = []
    for fold in range(folds):
        held = [int(i) for i in order[fold::folds]]
        out.append(([int(i) for i in order if i not in held], held))
    return out


def _errors(network: torch.nn.Module | LandmarkModel, cases: list[Case], names: tuple[str, ...],
            model: LandmarkModel) -> dict[str, Any]:
    """Per case and landmark: 3D error in mm (NaN if not annotated in view) and whether it was found."""
    data = case_samples(cases, names, model.metadata.canvas, None, 0.0)
    if isinstance(network, LandmarkModel):
        uv, depth, probability = network.predict(data.inputs)
    else:
        uv, depth, probability = predict_batches(network, data.inputs)
    spec = model.metadata.canvas
    planar = np.linalg.norm(uv - data.uv, axis=-1) * spec.pixel_spacing_mm
    depth_mm = np.abs(depth - data.depth) * data.depth_std_mm[:, None]
    error = np.where(data.in_view & data.known, np.sqrt(planar ** 2 + depth_mm ** 2), np.nan)
    threshold = model.metadata.found_rules(landmarks=names)[0]  # other names (fine-tuning to them): model-wide
    found = landmark_found(uv, probability, data.inputs[:, 2] > 0.5, threshold)
    return {"error_mm": error, "found": found, "in_view": data.in_view, "known": data.known}


def _summary(results: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    table = {}
    for index, name in enumerate(names):
        e = results["error_mm"][:, index]
        e = e[np.isfinite(e)]
        found = results["found"][:, index]
        in_view, known = results["in_view"][:, index], results["known"][:, index]
        table[name] = {
            "n": int(e.size),
            "mean_mm": float(e.mean()) if e.size else None, "median_mm": float(np.median(e)) if e.size else None,
            "p95_mm": float(np.percentile(e, 95)) if e.size else None, "max_mm": float(e.max()) if e.size else None,
            "not_found_in_view": int((~found & in_view).sum()),
            "found_not_in_view": int((found & ~in_view & known).sum()),
        }
    all_errors = results["error_mm"][np.isfinite(results["error_mm"])]
    table["all"] = {"n": int(all_errors.size), "mean_mm": float(all_errors.mean()) if all_errors.size else None,
                    "median_mm": float(np.median(all_errors)) if all_errors.size else None}
    return table


def finetune(model_name: str, data_dir: str | Path, out_path: str | Path, config: FinetuneConfig = FinetuneConfig(),
             *, landmarks: tuple[str, ...] | None = None, overwrite: bool = False,
             progress: ProgressCallback | None = None, should_cancel: CancelCheck | None = None) -> dict[str, Any]:
    """Cross-validate fine-tuning on a folder of annotated volumes, then fine-tune on all and save the model.

    Args:
        model_name: pretrained bundle (name or path).
        data_dir: folder of volumes with same-named landmark files.
        out_path: where to write the new bundle (.pt); the report goes beside it (.json and .md).
        config: recipe.
        landmarks: landmark names of the new model (default: the pretrained model's).
    Returns:
        The report: per-landmark cross-validated errors of the pretrained and the fine-tuned model.
    """
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it.")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    model = load_model(model_name)
    names = tuple(landmarks or model.metadata.landmarks)
    pairs = find_cases(data_dir)
    if len(pairs) < 2:
        raise InputError(f"{data_dir} holds {len(pairs)} annotated volume(s); fine-tuning needs at least 2.")
    cases = []
    for index, (volume_path, marks_path) in enumerate(pairs):
        check_cancel(should_cancel)
        report(progress, 0.1 * index / len(pairs), f"Reading {volume_path.name}")
        volume = read_volume(volume_path)
        image = model_projection(volume.voxels_kji, volume.ijk_to_ras, model.metadata.projection, model.metadata.canvas)
        cases.append(Case(case_name(volume_path), image, read_markups(marks_path)))
    matched = {n for c in cases for n in c.points.labels} & set(names)
    if not matched:
        raise InputError(f"none of the landmark labels in {data_dir} match the model's {list(names)}; pass "
                         "landmarks=(...) (--landmarks) to train a model for your own landmarks.")
    splits = cross_validation_folds(len(cases), config.folds, config.seed)
    rng = np.random.default_rng([config.seed, 7])
    cv = {"error_mm": np.full((len(cases), len(names)), np.nan), "found": np.zeros((len(cases), len(names)), bool),
          "in_view": np.zeros((len(cases), len(names)), bool), "known": np.zeros((len(cases), len(names)), bool)}

    def stage(start: float, span: float, label: str) -> StepCallback:
        """Each optimizer step of one training, reported between start and start + span."""
        return lambda done, steps: report(progress, start + span * done / steps, f"{label}, step {done}/{steps}")

    for fold, (train_indices, held) in enumerate(splits):
        network = finetuned_network(model, names, [cases[i] for i in train_indices], config, rng, should_cancel,
                                    stage(0.1 + 0.8 * fold / len(splits), 0.8 / len(splits),
                                          f"Cross-validation fold {fold + 1}/{len(splits)}"))
        fold_results = _errors(network, [cases[i] for i in held], names, model)
        for key in cv:
            cv[key][held] = fold_results[key]
    same_names = names == model.metadata.landmarks
    result = {
        "model": str(model.path), "cases": [c.name for c in cases], "folds": len(splits),
        "config": dataclasses.asdict(config),
        "finetuned_cross_validated": _summary(cv, names),
        "pretrained": _summary(_errors(model, cases, names, model), names) if same_names else None,
    }
    final = finetuned_network(model, names, cases, config, rng, should_cancel,
                              stage(0.9, 0.09, "Fine-tuning on all cases"))
    train_config = TrainConfig.from_dict(model.metadata.training.get("config", {}))
    export(final, train_config, out, name=out.name.removesuffix(".pt"), landmarks=names, overwrite=overwrite,
           metrics={"cross_validation": result}, description=f"{model.metadata.name} fine-tuned on {len(cases)} "
           f"cases of {Path(data_dir).name}", training={"finetuned_from": model.metadata.name,
                                                        "finetune": dataclasses.asdict(config)})
    with atomic_open(out.with_suffix(".json"), "w", overwrite=True) as f:
        json.dump(result, f, indent=2)
    with atomic_open(out.with_suffix(".md"), "w", overwrite=True) as f:
        f.write(report_markdown(result))
    report(progress, 1.0, "Done")
    return result


def report_markdown(result: dict[str, Any]) -> str:
    """Cross-validation report as a Markdown table (mm)."""
    lines = [f"Cross-validation: {result['folds']} folds over {len(result['cases'])} cases.", "",
             "| landmark | n | pretrained mean | fine-tuned mean | fine-tuned median | fine-tuned p95 | max |",
             "|---|---|---|---|---|---|---|"]
    for name, row in result["finetuned_cross_validated"].items():
        if name == "all":
            continue
        pre = (result["pretrained"] or {}).get(name, {}).get("mean_mm")
        cells = [row["n"], pre, row["mean_mm"], row["median_mm"], row["p95_mm"], row["max_mm"]]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else (f"{c:.1f}" if isinstance(c, float) else str(c))
                                              for c in cells) + " |")
    return "\n".join(lines) + "\n"
