"""Pretraining on synthetic renders generated on the fly: config, loop, validation, logging, checkpoints, export.

A run writes into its output folder: ``config.json`` (the resolved configuration), ``log.csv`` (one row per
validation), ``checkpoint.pt`` (weights and optimizer state of the last validation, ours to resume from) and
``model.pt`` (the exported bundle).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..fileio import atomic_open, atomic_path
from ..framing import CanvasSpec
from ..model import ModelMetadata, save_model
from ..pipeline import landmark_found
from ..progress import CancelCheck, check_cancel, progress_bar
from ..projection import ProjectionConfig
from .data import KINDS, Augmentation, Batch, SyntheticSource
from .losses import LossWeights, Targets, landmark_loss
from .networks import HeatmapUNet, RegressionCNN

logger = logging.getLogger(__name__)

ARCHITECTURES = ("heatmap-unet", "regression-cnn")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved beside its outputs.

    Attributes:
        anatomy: "body" or "hand".
        architecture: "heatmap-unet" or "regression-cnn".
        unet_levels: channel counts of the U-Net's levels (heatmap-unet only).
        canvas: network input size and pixel spacing.
        projection: how detection will project volumes for this model.
        steps: optimizer steps.
        batch_size: samples per step.
        optimizer: "adamw", or "sgd" with the paper's schedule (lr x lr_decay every epoch_steps).
        lr: initial learning rate.
        momentum: SGD momentum.
        lr_decay: SGD's per-epoch factor (paper: 0.7943).
        epoch_steps: steps per "epoch" for SGD's schedule.
        weight_decay: AdamW weight decay.
        validate_every: steps between validations.
        validation_size: held-out synthetic samples (from a seed never used for training).
        seed: makes the run repeatable.
        workers: data-generating processes (0: generate in the training process).
        threads: torch CPU threads for the network.
        augmentation: simulated scan conditions.
        anny_fraction: share of whole bodies from the anny body model (the rest from the primitive generator).
        primitive_unknown: landmarks that primitive bodies do not teach (``SyntheticSource``).
        loss: loss weights.
    """

    anatomy: str = "body"
    architecture: str = "heatmap-unet"
    unet_levels: tuple[int, ...] = (24, 32, 48, 64, 96)
    canvas: CanvasSpec = CanvasSpec(height=192, width=96, pixel_spacing_mm=12.0)
    projection: ProjectionConfig = ProjectionConfig()
    steps: int = 3000
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    momentum: float = 0.9
    lr_decay: float = 0.7943
    epoch_steps: int = 500
    weight_decay: float = 1e-4
    validate_every: int = 250
    validation_size: int = 256
    seed: int = 0
    workers: int = 1
    threads: int = 2
    augmentation: Augmentation = field(default_factory=Augmentation)
    anny_fraction: float = 0.0
    primitive_unknown: tuple[str, ...] = ()
    loss: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if self.anatomy not in KINDS:
            raise InputError(f"anatomy must be one of {sorted(KINDS)}, got {self.anatomy!r}.")
        if self.architecture not in ARCHITECTURES:
            raise InputError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}.")
        if self.optimizer not in ("adamw", "sgd"):
            raise InputError(f"optimizer must be adamw or sgd, got {self.optimizer!r}.")
        if self.canvas.height % 16 or self.canvas.width % 16:
            raise InputError(f"canvas sides must be multiples of 16, got {self.canvas.width} x {self.canvas.height}.")
        for name in ("steps", "batch_size", "validate_every", "validation_size", "epoch_steps", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a (possibly partial) dict, as read from a JSON config file."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InputError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}.")
        values = {k: tuple(v) if k in ("unet_levels", "primitive_unknown") else v for k, v in values.items()}
        nested = {"canvas": CanvasSpec.from_dict, "projection": ProjectionConfig.from_dict,
                  "augmentation": lambda v: Augmentation(**_tuples(v)), "loss": lambda v: LossWeights(**v)}
        for name, build in nested.items():
            if isinstance(values.get(name), dict):
                values[name] = build(values[name])
        return cls(**values)


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def build_network(config: TrainConfig, n_landmarks: int) -> torch.nn.Module:
    """A fresh network of the configured family."""
    if config.architecture == "heatmap-unet":
        return HeatmapUNet(n_landmarks, levels=tuple(config.unet_levels))
    return RegressionCNN(n_landmarks, config.canvas.height, config.canvas.width)


class _SyntheticStream(torch.utils.data.IterableDataset):
    """Endless batches; each worker draws from its own generator derived from the run seed."""

    def __init__(self, config: TrainConfig, start_step: int = 0):
        super().__init__()
        self.config = config
        self.start_step = start_step

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        source = SyntheticSource(self.config.anatomy, self.config.canvas, self.config.augmentation,
                                 self.config.anny_fraction, self.config.primitive_unknown)
        step = self.start_step + worker
        while True:
            yield source.batch(self.config.batch_size, np.random.default_rng([self.config.seed, 1, step]))
            step += workers


def to_tensors(batch: Batch, device: str = "cpu") -> tuple[torch.Tensor, Targets]:
    """Network input tensor and loss targets from a Batch."""
    return (torch.from_numpy(batch.inputs).to(device),
            Targets(uv=torch.from_numpy(batch.uv).to(device), depth=torch.from_numpy(batch.depth).to(device),
                    in_view=torch.from_numpy(batch.in_view).to(device),
                    known=torch.from_numpy(batch.known).to(device), located=torch.from_numpy(batch.located).to(device)))


def validation_set(config: TrainConfig) -> Batch:
    """Held-out synthetic samples from a seed stream that training never draws from."""
    source = SyntheticSource(config.anatomy, config.canvas, config.augmentation, config.anny_fraction,
                             config.primitive_unknown)
    batches = [source.batch(min(64, config.validation_size - start), np.random.default_rng([config.seed, 2, start]))
               for start in range(0, config.validation_size, 64)]
    return Batch.stack(batches)


def predict_batches(network: torch.nn.Module, inputs: np.ndarray, device: str = "cpu", chunk: int = 64
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uv, normalized depth and in-view probability for many canvases (eval mode, no gradients)."""
    network.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), chunk):
            uv, depth, logit = network(torch.from_numpy(inputs[start:start + chunk]).to(device))
            outputs.append((uv.cpu().numpy(), depth.cpu().numpy(), torch.sigmoid(logit).cpu().numpy()))
    return tuple(np.concatenate(parts) for parts in zip(*outputs, strict=True))  # type: ignore[return-value]


def validation_metrics(network: torch.nn.Module, data: Batch, spec: CanvasSpec, threshold: float = 0.5,
                       device: str = "cpu") -> dict[str, float]:
    """In-plane and depth errors in mm of in-view landmarks, and how often in-view is decided right."""
    uv, depth, probability = predict_batches(network, data.inputs, device)
    located = data.in_view & data.known
    planar_mm = np.linalg.norm(uv - data.uv, axis=-1)[located] * spec.pixel_spacing_mm
    depth_mm = (np.abs(depth - data.depth) * data.depth_std_mm[:, None])[located]
    error_3d = np.sqrt(planar_mm ** 2 + depth_mm ** 2)
    found = landmark_found(uv, probability, data.inputs[:, 2] > 0.5, threshold)
    out_of_view = ~data.in_view & data.known
    return {
        "mean_3d_mm": float(error_3d.mean()) if error_3d.size else math.nan,
        "median_3d_mm": float(np.median(error_3d)) if error_3d.size else math.nan,
        "p95_3d_mm": float(np.percentile(error_3d, 95)) if error_3d.size else math.nan,
        "mean_planar_mm": float(planar_mm.mean()) if planar_mm.size else math.nan,
        "mean_depth_mm": float(depth_mm.mean()) if depth_mm.size else math.nan,
        "in_view_reported_found": float(found[located].mean()) if located.any() else math.nan,
        "out_of_view_reported_not_found": float((~found[out_of_view]).mean()) if out_of_view.any() else math.nan,
    }


def _learning_rate(config: TrainConfig, step: int) -> float:
    if config.optimizer == "sgd":
        return config.lr * config.lr_decay ** (step // config.epoch_steps)
    warmup = min(1.0, (step + 1) / 100)
    return config.lr * warmup * 0.5 * (1 + math.cos(math.pi * step / config.steps))


def train(config: TrainConfig, out_dir: str | Path, *, progress_bar: bool = True,
          should_cancel: CancelCheck | None = None, initial_state: dict[str, Any] | None = None) -> Path:
    """Train a network on synthetic data and export it as a bundle ``out_dir/model.pt``.

    Args:
        config: the run's settings.
        out_dir: output folder (created); refuses one that already holds a finished model.pt.
        progress_bar: show progress (a tqdm bar, or log lines where tqdm is missing).
        should_cancel: checked every step.
        initial_state: network weights to start from (e.g. a pretrained model's state_dict).
    Returns:
        Path of the exported bundle.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "model.pt").exists():
        raise FileExistsError(f"{out / 'model.pt'} exists; choose a new output folder for a new run.")
    with atomic_open(out / "config.json", "w", overwrite=True) as f:
        json.dump(config.to_dict(), f, indent=2)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    landmarks = KINDS[config.anatomy].landmarks
    network = build_network(config, len(landmarks))
    if initial_state is not None:
        network.load_state_dict(initial_state)
    optimizer = (torch.optim.SGD(network.parameters(), lr=config.lr, momentum=config.momentum)
                 if config.optimizer == "sgd" else
                 torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay))
    validation = validation_set(config)
    loader = torch.utils.data.DataLoader(_SyntheticStream(config), batch_size=None, num_workers=config.workers,
                                         persistent_workers=config.workers > 0, prefetch_factor=4 if config.workers
                                         else None)
    log_path = out / "log.csv"
    columns: list[str] | None = None
    bar = _progress(config.steps, progress_bar)
    running: dict[str, float] = {}
    start = time.perf_counter()
    metrics: dict[str, float] = {}
    for step, batch in enumerate(loader):
        if step >= config.steps:
            break
        check_cancel(should_cancel)
        network.train()
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        inputs, targets = to_tensors(batch)
        loss, parts = landmark_loss(network, inputs, targets, (config.canvas.height, config.canvas.width),
                                    config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
        optimizer.step()
        for key, value in {"loss": loss.item(), **parts}.items():
            running[key] = 0.98 * running.get(key, value) + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running['loss']:.3f}", px=f"{running['position_px']:.2f}")
        if (step + 1) % config.validate_every == 0 or step + 1 == config.steps:
            metrics = validation_metrics(network, validation, config.canvas)
            row = {"step": step + 1, "seconds": round(time.perf_counter() - start, 1),
                   "lr": _learning_rate(config, step), **{f"train_{k}": v for k, v in running.items()},
                   **{f"val_{k}": v for k, v in metrics.items()}}
            columns = columns or list(row)
            _append_csv(log_path, columns, row)
            _save_checkpoint(out / "checkpoint.pt", network, optimizer, step + 1)
            logger.info("step %d: val mean 3D %.1f mm, in-view found %.3f, out-of-view not found %.3f", step + 1,
                        metrics["mean_3d_mm"], metrics["in_view_reported_found"],
                        metrics["out_of_view_reported_not_found"])
    bar.close()
    model_path = out / "model.pt"
    export(network, config, model_path, metrics={"synthetic_validation": metrics},
           training={"steps": config.steps, "seed": config.seed, "seconds": round(time.perf_counter() - start)})
    return model_path


def export(network: torch.nn.Module, config: TrainConfig, path: Path, *, name: str | None = None,
           metrics: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
           landmarks: tuple[str, ...] | None = None, description: str = "",
           calibration: dict[str, Any] | None = None, overwrite: bool = False) -> None:
    """Write ``network`` as a bundle with its metadata (DESIGN §4).

    Args:
        calibration: ``ModelMetadata`` fields that decide when a landmark is found and where it is placed
            (confidence_threshold, mirror_tolerance_mm, landmark_thresholds, depth_fractions, ...); their defaults
            where not given.
    """
    network.eval()
    metadata = ModelMetadata(
        name=name or path.stem, landmarks=landmarks or KINDS[config.anatomy].landmarks, canvas=config.canvas,
        projection=config.projection, architecture=config.architecture, description=description,
        training={"config": config.to_dict(), "torch": torch.__version__, **(training or {})}, metrics=metrics or {},
        **(calibration or {}))
    save_model(network, metadata, path, overwrite=overwrite)


def _progress(total: int, enabled: bool) -> Any:
    return progress_bar(total, "train", unit="step", enabled=enabled)


def _append_csv(path: Path, columns: list[str], row: dict[str, Any]) -> None:
    """Add a row to a CSV log by rewriting it atomically, so that a killed run never leaves half a line."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    with atomic_open(path, "w", overwrite=True, newline="") as f:
        f.write(text)
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if not text:
            writer.writeheader()
        writer.writerow(row)


def _save_checkpoint(path: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        torch.save({"step": step, "network": network.state_dict(), "optimizer": optimizer.state_dict()}, tmp)
