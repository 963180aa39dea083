"""Model bundles: one TorchScript file with its metadata inside, validated on load (DESIGN §4).

A bundle is written by ``torch.jit.save(module, path, _extra_files={"landmark_detector.json": ...})``. Its
``forward(x)`` takes a (B, 3, H, W) float tensor (silhouette, normalized depth, in-field mask; see
``framing.Canvas.network_input``) and returns a tuple ``(uv, depth, logit)``: (B, N, 2) canvas pixel (u, v),
(B, N) normalized depth and (B, N) in-view logits, for the N landmarks named in the metadata.

Loading never unpickles Python objects: the metadata is read from the zip archive first and validated, then the
file is loaded with ``torch.jit.load`` (TorchScript only) and run once on a blank input to check its outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InputError, ModelError
from .framing import CanvasSpec
from .projection import ProjectionConfig

logger = logging.getLogger(__name__)

FORMAT_NAME = "landmark-detector-model"
FORMAT_VERSION = 1
METADATA_FILE = "landmark_detector.json"
MODEL_SUFFIX = ".pt"
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"
CHECKSUM_FILE = "SHA256SUMS"
USER_MODELS_ENV = "LANDMARK_DETECTOR_MODELS"
DEFAULT_MODEL = "wholebody-ct"
REAL_ANATOMY_SET = "real-anatomy phantoms"  # the measured set that judges a bundled model (metrics.evaluation.sets)
USER_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModelMetadata:
    """What detection needs to know about a bundle, stored inside it as JSON.

    Attributes:
        name: short model name, e.g. "wholebody-ct".
        landmarks: landmark names, in output order.
        canvas: network input size and pixel spacing.
        projection: how volumes are projected for this model (pixel spacing comes from the canvas).
        confidence_threshold: in-view probability below which a landmark is reported as not found.
        mirror_tolerance_mm: a landmark is reported as found only when the network's estimates on the canvas and on
            its left-right mirror (paired labels swapped) lie within this distance, mm; None: no mirror check (one
            network pass; models whose landmarks have no left-right pairs).
        landmark_thresholds: landmark name -> its own confidence threshold, in place of ``confidence_threshold``
            (calibrated per landmark: some are placed far more reliably than others).
        landmark_mirror_tolerances_mm: landmark name -> its own mirror tolerance, mm, in place of
            ``mirror_tolerance_mm`` (only for models with a mirror check).
        landmark_edge_margins_mm: landmark name -> how far inside the scanned field's edges (in the image plane) its
            placed point must lie to be reported found, mm (others: anywhere in the field): a big toe at the edge
            of a scan is as likely a foot cut there.
        depth_fractions: landmark name -> fraction of the body's thickness along its viewing ray (0 where the ray
            enters the body, 1 where it leaves) at which detection places it instead of at the network's depth
            (``thickness.at_depth_fractions``): joint centres, whose depth within a limb does not depend on the
            body's build as the network's normalized depth does.
        surface_extremes: landmark name -> patient direction (RAS, unit) in which it is the body's farthest skin
            point; detection places it at the body's extreme near the network's point, read from the volume
            (``surface.at_surface_extremes``): skin landmarks defined as extremes (the head top, a toe's tip). With
            a mirror check, their disagreement is that of the two views' extremes (``surface.extremes_disagreement``).
        onto_skin: skin landmarks that detection moves onto the body's nearest surface when the network places them
            in the air next to it (``surface.at_skin``; fingertips).
        limb_tips: landmark name -> the landmark at its limb's root; detection places it at the end of the limb read
            from the volume, the body's extreme in the direction from the root (``limbtips.at_limb_tips``; a
            whole body's middle fingertips from the shoulders).
        architecture: network family, e.g. "heatmap-unet" or "regression-cnn".
        description: one paragraph for people (model card summary).
        training: provenance: data, recipe, command, seed, versions.
        metrics: measured accuracy, as written by the evaluation.
    """

    name: str
    landmarks: tuple[str, ...]
    canvas: CanvasSpec
    projection: ProjectionConfig
    confidence_threshold: float = 0.5
    mirror_tolerance_mm: float | None = None
    landmark_thresholds: dict[str, float] = field(default_factory=dict)
    landmark_mirror_tolerances_mm: dict[str, float] = field(default_factory=dict)
    landmark_edge_margins_mm: dict[str, float] = field(default_factory=dict)
    depth_fractions: dict[str, float] = field(default_factory=dict)
    surface_extremes: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    onto_skin: tuple[str, ...] = ()
    limb_tips: dict[str, str] = field(default_factory=dict)
    architecture: str = ""
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": self.name,
            "landmarks": list(self.landmarks), "canvas": self.canvas.to_dict(),
            "projection": self.projection.to_dict(), "confidence_threshold": self.confidence_threshold,
            "mirror_tolerance_mm": self.mirror_tolerance_mm, "landmark_thresholds": self.landmark_thresholds,
            "landmark_mirror_tolerances_mm": self.landmark_mirror_tolerances_mm,
            "landmark_edge_margins_mm": self.landmark_edge_margins_mm,
            "depth_fractions": self.depth_fractions,
            "surface_extremes": {k: list(v) for k, v in self.surface_extremes.items()},
            "onto_skin": list(self.onto_skin), "limb_tips": self.limb_tips,
            "architecture": self.architecture,
            "description": self.description, "training": self.training, "metrics": self.metrics},
            indent=2, sort_keys=True)

    def found_rules(self, confidence_threshold: float | None = None, mirror_tolerance_mm: float | None = None,
                    landmarks: tuple[str, ...] | None = None
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Per landmark (the model's, or ``landmarks``: names it lacks get its model-wide values): the confidence
        threshold and the mirror tolerance in mm (None: no mirror check) that decide whether it is found; a value given
        here replaces the model's for every landmark."""
        names = self.landmarks if landmarks is None else landmarks
        thresholds = np.array([self.landmark_thresholds.get(n, self.confidence_threshold) for n in names])
        if confidence_threshold is not None:
            thresholds[:] = confidence_threshold
        if self.mirror_tolerance_mm is None:
            return thresholds, None
        tolerances = np.array([self.landmark_mirror_tolerances_mm.get(n, self.mirror_tolerance_mm) for n in names])
        if mirror_tolerance_mm is not None:
            tolerances[:] = mirror_tolerance_mm
        return thresholds, tolerances

    def edge_margins_mm(self) -> NDArray[np.float64]:
        """(N,) each landmark's edge margin, mm (``landmark_edge_margins_mm``; 0 where it has none)."""
        return np.array([self.landmark_edge_margins_mm.get(n, 0.0) for n in self.landmarks])

    def rules_differ_by_landmark(self) -> bool:
        """Whether the landmarks' confidence thresholds, or their mirror tolerances, are not all the same."""
        return any(min(values) != max(values) for values in self.found_rules() if values is not None)

    def found_rule_ranges(self) -> tuple[str, str | None]:
        """The confidence thresholds ("0.50", or "LOW-HIGH" where landmarks differ) and the mirror tolerances in mm
        (None without a mirror check), as the help texts and the Slicer panel show them."""
        thresholds, tolerances = self.found_rules()
        return _value_range(thresholds, ".2f"), None if tolerances is None else _value_range(tolerances, "g")

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model") -> ModelMetadata:
        """Parse and validate bundle metadata.

        Raises:
            ModelError: not JSON, another format or version, missing or invalid fields.
        """
        try:
            values = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise ModelError(f"{source}: {METADATA_FILE} is not valid JSON ({error}).") from None
        if not isinstance(values, dict) or values.get("format") != FORMAT_NAME:
            raise ModelError(f"{source} is not a LandmarkDetector model bundle (no '{FORMAT_NAME}' format tag).")
        version = values.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(f"{source} has bundle format version {version!r}; this LandmarkDetector reads version "
                             f"{FORMAT_VERSION}. Update LandmarkDetector or re-export the model with this version.")
        try:
            landmarks = tuple(str(name) for name in values["landmarks"])
            metadata = cls(name=str(values["name"]), landmarks=landmarks,
                           canvas=CanvasSpec.from_dict(values["canvas"]),
                           projection=ProjectionConfig.from_dict(values["projection"]),
                           confidence_threshold=float(values.get("confidence_threshold", 0.5)),
                           mirror_tolerance_mm=_optional_float(values.get("mirror_tolerance_mm")),
                           landmark_thresholds=_floats(values.get("landmark_thresholds")),
                           landmark_mirror_tolerances_mm=_floats(values.get("landmark_mirror_tolerances_mm")),
                           landmark_edge_margins_mm=_floats(values.get("landmark_edge_margins_mm")),
                           depth_fractions=_floats(values.get("depth_fractions")),
                           surface_extremes={str(k): _unit_direction(v) for k, v in
                                             dict(values.get("surface_extremes") or {}).items()},
                           onto_skin=tuple(str(name) for name in values.get("onto_skin") or ()),
                           limb_tips={str(k): str(v) for k, v in dict(values.get("limb_tips") or {}).items()},
                           architecture=str(values.get("architecture", "")),
                           description=str(values.get("description", "")),
                           training=dict(values.get("training", {})), metrics=dict(values.get("metrics", {})))
        except (KeyError, TypeError, ValueError, InputError) as error:
            raise ModelError(f"{source}: invalid metadata in {METADATA_FILE} ({type(error).__name__}: {error}).") \
                from None
        if not landmarks or len(set(landmarks)) != len(landmarks) or not all(landmarks):
            raise ModelError(f"{source}: landmark names must be unique and non-empty, got {list(landmarks)}.")
        if not 0.0 <= metadata.confidence_threshold <= 1.0:
            raise ModelError(f"{source}: confidence_threshold must be in [0, 1], got {metadata.confidence_threshold}.")
        tolerance = metadata.mirror_tolerance_mm
        if tolerance is not None and not (np.isfinite(tolerance) and tolerance > 0):
            raise ModelError(f"{source}: mirror_tolerance_mm must be a positive number of mm or null, got {tolerance}.")
        for name, value in metadata.landmark_thresholds.items():
            if name not in landmarks or not 0.0 <= value <= 1.0:
                raise ModelError(f"{source}: landmark_thresholds must map the model's landmarks to probabilities in "
                                 f"[0, 1], got {name!r}: {value}.")
        for name, value in metadata.landmark_mirror_tolerances_mm.items():
            if name not in landmarks or tolerance is None or not (np.isfinite(value) and value > 0):
                raise ModelError(f"{source}: landmark_mirror_tolerances_mm must map the model's landmarks to positive "
                                 f"numbers of mm, and needs a mirror_tolerance_mm; got {name!r}: {value}.")
        for name, value in metadata.landmark_edge_margins_mm.items():
            if name not in landmarks or not (np.isfinite(value) and value >= 0):
                raise ModelError(f"{source}: landmark_edge_margins_mm must map the model's landmarks to numbers of mm "
                                 f"(0 or more), got {name!r}: {value}.")
        for name, fraction in metadata.depth_fractions.items():
            if name not in landmarks or not 0.0 <= fraction <= 1.0:
                raise ModelError(f"{source}: depth_fractions must map the model's landmarks to fractions in [0, 1], "
                                 f"got {name!r}: {fraction}.")
        # Skin landmarks, placed on the body's surface; joint centres (depth_fractions) lie inside it.
        for field_name in ("surface_extremes", "onto_skin", "limb_tips"):
            for name in getattr(metadata, field_name):
                if name not in landmarks or name in metadata.depth_fractions:
                    raise ModelError(f"{source}: {field_name} must name the model's skin landmarks, none of them in "
                                     f"depth_fractions (joint centres lie inside the body), got {name!r}.")
        for tip, base in metadata.limb_tips.items():
            if base not in landmarks or base == tip:
                raise ModelError(f"{source}: limb_tips must map each tip to another of the model's landmarks (its "
                                 f"limb's root), got {tip!r}: {base!r}.")
        return metadata


def _value_range(values: NDArray[np.float64], spec: str) -> str:
    """"V" when all values are equal, "LOW-HIGH" when they differ, each in the format ``spec``."""
    low, high = float(np.min(values)), float(np.max(values))
    return f"{low:{spec}}" if low == high else f"{low:{spec}}-{high:{spec}}"


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _floats(value: Any) -> dict[str, float]:
    """A JSON object of numbers (absent or null: empty)."""
    return {str(k): float(v) for k, v in dict(value or {}).items()}


def _unit_direction(value: Any) -> tuple[float, float, float]:
    """Three finite numbers, not all zero, scaled to unit length."""
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (3,) or not np.all(np.isfinite(v)) or not np.linalg.norm(v) > 0:
        raise ValueError(f"a direction must be three finite numbers, not all zero, got {value!r}")
    x, y, z = v / np.linalg.norm(v)
    return float(x), float(y), float(z)


@dataclass
class LandmarkModel:
    """A loaded, validated bundle.

    Attributes:
        metadata: the bundle's metadata.
        module: the TorchScript module (on ``device``).
        path: where it was loaded from.
        device: torch device string it runs on.
        cpu_threads: torch CPU threads the network runs on (None: torch's setting, which stays as it was). One by
            default: the network takes a few milliseconds, and torch's threads wait for each other at every layer,
            so a detection slows down many-fold when one of them shares its core with other work
            (``benchmarks/bench_busy.py``).
    """

    metadata: ModelMetadata
    module: Any
    path: Path
    device: str = "cpu"
    cpu_threads: int | None = 1

    @property
    def landmark_names(self) -> tuple[str, ...]:
        return self.metadata.landmarks

    def to(self, device: str) -> LandmarkModel:
        """This model on ``device`` ("auto", "cpu", "cuda"): itself when it is already there, else loaded again
        from its file (a frozen module's weights are constants that ``Module.to`` does not move)."""
        device = resolve_device(device)
        if device == self.device:
            return self
        return load_model(self.path, device)

    def predict(self, inputs: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                           NDArray[np.float64]]:
        """Run the network on (B, 3, H, W) canvases.

        Returns:
            uv (B, N, 2) canvas pixels, normalized depth (B, N), in-view probability (B, N).
        """
        import torch

        with torch.inference_mode(), _torch_threads(self.cpu_threads if self.device == "cpu" else None):
            x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self.device)
            uv, depth, logit = self.module(x)
            return (uv.double().cpu().numpy(), depth.double().cpu().numpy(),
                    torch.sigmoid(logit).double().cpu().numpy())


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``threads`` for the block and restored after it (None: left as it is)."""
    import torch

    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when available, else "cpu"; "cuda" without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but PyTorch sees no CUDA GPU; choose device 'cpu' or 'auto'.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"device must be auto, cpu or cuda, got {device!r}.")
    return device


def available_devices() -> dict[str, str]:
    """Devices PyTorch can run on, e.g. {"cpu": "CPU", "cuda": "NVIDIA H100"}; empty when PyTorch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return {}
    import torch

    devices = {"cpu": "CPU"}
    if torch.cuda.is_available():
        devices["cuda"] = torch.cuda.get_device_name(0)
    return devices


def user_models_dir() -> Path:
    """Folder for models the user trained or fine-tuned: $LANDMARK_DETECTOR_MODELS when set (the Slicer module sets
    it to a folder beside Slicer's settings), else LandmarkDetector/models in the platform's folder for user data:
    %LOCALAPPDATA% on Windows, ~/Library/Application Support on macOS, $XDG_DATA_HOME (default ~/.local/share)
    elsewhere."""
    configured = os.environ.get(USER_MODELS_ENV)
    if configured:
        return Path(configured)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"  # relative: invalid per XDG
    return base / "LandmarkDetector" / "models"


def available_models() -> dict[str, Path]:
    """Model name -> file, bundled ones first; a user model with a bundled model's name is listed as user:NAME."""
    models = {p.name[: -len(MODEL_SUFFIX)]: p for p in sorted(BUNDLED_DIR.glob(f"*{MODEL_SUFFIX}"))}
    folder = user_models_dir()
    if folder.is_dir():
        for p in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
            name = p.name[: -len(MODEL_SUFFIX)]
            models[f"user:{name}" if name in models else name] = p
    return models


def default_model() -> str:
    """DEFAULT_MODEL when it is installed (or when no model is), else the first available model."""
    models = available_models()
    return DEFAULT_MODEL if DEFAULT_MODEL in models or not models else next(iter(models))


def model_file(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a model given by name (bundled or user model) or path.

    Raises:
        ModelError: a name that is neither a known model nor an existing file.
    """
    models = available_models()
    key = os.fspath(name_or_path)
    path = models[key] if key in models else Path(key)
    if not path.is_file() and key not in models and os.sep not in key and not key.endswith(MODEL_SUFFIX):
        raise ModelError(f"unknown model {key!r}; available: {', '.join(models) or 'none'} (or give a file path).")
    return path


def model_name_of(path: str | os.PathLike[str]) -> str:
    """How a model file is listed: its model name for bundled and user models, else its path."""
    return next((name for name, known in available_models().items() if Path(known) == Path(path)), os.fspath(path))


def user_model_path(name: str) -> Path:
    """Where a user model called ``name`` is saved (see user_models_dir()).

    Raises:
        InputError: a name that is empty, not a plain file name, ends in .pt, or is a bundled model's.
    """
    if not USER_MODEL_NAME.fullmatch(name or "") or name.endswith(MODEL_SUFFIX):
        raise InputError(f"model name {name!r} must start with a letter or digit and contain only letters, digits, "
                         "'.', '_' and '-' (no .pt suffix).")
    if (BUNDLED_DIR / f"{name}{MODEL_SUFFIX}").is_file():
        raise InputError(f"{name!r} is a bundled model's name; choose another name.")
    return user_models_dir() / f"{name}{MODEL_SUFFIX}"


def measured_accuracy(metadata: ModelMetadata) -> dict[str, dict[str, Any]]:
    """The 3D error over all landmarks recorded in a model (mm: mean_mm, median_mm and, where measured, more), per set
    of cases: a bundled model's real-anatomy phantoms (first) and held-out synthetic volumes of each generator, or a
    fine-tuned model's cross-validation on its cases; empty if none was recorded."""
    metrics = metadata.metrics
    sets = {name: entry["new"]["model"]["all"] for name, entry in metrics.get("evaluation", {}).get("sets", {}).items()
            if "all" in entry.get("new", {}).get("model", {})}
    if sets:
        return {name: sets[name] for name in sorted(sets, key=lambda name: name != REAL_ANATOMY_SET)}
    cross_validated = metrics.get("cross_validation", {}).get("finetuned_cross_validated", {}).get("all")
    return {"cross-validated on its fine-tuning cases": cross_validated} if cross_validated else {}


def measured_error_text(metadata: ModelMetadata) -> str | None:
    """The measured 3D error as the Slicer panel shows it: "SET MEAN / MEDIAN mm" per set, or None."""
    accuracy = measured_accuracy(metadata)
    return "; ".join(f"{name} {a['mean_mm']:.1f} / {a['median_mm']:.1f} mm" for name, a in accuracy.items()) or None


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """Read and validate a bundle's metadata without loading the network (no torch needed)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file {p} does not exist; `landmark-detector models` lists the available models.")
    if not zipfile.is_zipfile(p):
        raise ModelError(f"{p} is not a TorchScript model bundle (not a zip archive); a model must be a file "
                         "written by LandmarkDetector's export (torch.jit.save with metadata).")
    try:
        with zipfile.ZipFile(p) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")]
            if not names:
                raise ModelError(f"{p} has no {METADATA_FILE} metadata; re-export it with training.export_model().")
            text = archive.read(names[0])
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelError(f"{p} is a corrupt model file ({error}).") from None
    return ModelMetadata.from_json(text, source=str(p))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_bundled_checksum(path: Path) -> None:
    """A bundled model must match the SHA-256 recorded beside it (guards against corrupt installs)."""
    sums = BUNDLED_DIR / CHECKSUM_FILE
    if path.parent.resolve() != BUNDLED_DIR.resolve() or not sums.is_file():
        return
    expected = dict(reversed(line.split(maxsplit=1)) for line in sums.read_text().splitlines() if line.strip())
    recorded = expected.get(path.name)
    if recorded is None:
        raise ModelError(f"bundled model {path.name} is not listed in {sums}; reinstall the extension.")
    if sha256_of(path) != recorded.strip():
        raise ModelError(f"bundled model {path} does not match its SHA-256 in {sums}: the file is corrupt or was "
                         "changed; reinstall the extension.")


def load_model(name_or_path: str | os.PathLike[str], device: str = "auto") -> LandmarkModel:
    """Load a model bundle by name (bundled or user model) or by file path, and validate it.

    Args:
        name_or_path: e.g. "wholebody-ct", "hand-mr", or a path to a .pt bundle.
        device: "auto" (CUDA when present, else the CPU; ``detect_landmarks``'s default too, so that it does not
            load the model again), "cpu" or "cuda".
    Raises:
        ModelError: unknown name, missing file, not a bundle, bad metadata, wrong outputs.
    """
    import torch

    path = model_file(name_or_path)
    metadata = read_metadata(path)
    _check_bundled_checksum(path)
    device = resolve_device(device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.9+ deprecates TorchScript, still supported
            module = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as error:
        raise ModelError(f"{path} could not be loaded as TorchScript ({str(error).splitlines()[0]}).") from None
    module = _optimized(module.eval())
    model = LandmarkModel(metadata=metadata, module=module, path=path, device=device)
    _check_outputs(model)
    return model


def _optimized(module: Any) -> Any:
    """The module frozen and fused for inference (weights become constants: about 1.5x faster on a CPU); the
    module as it is when the optimization does not apply."""
    import torch

    try:
        return torch.jit.optimize_for_inference(module)
    except Exception as error:  # foreign TorchScript may not freeze; it still runs unoptimized
        logger.debug("model not optimized for inference: %s", error)
        return module


def _check_outputs(model: LandmarkModel) -> None:
    """Run the network once on a blank canvas; its outputs must match the landmark list."""
    import torch

    spec = model.metadata.canvas
    n = len(model.metadata.landmarks)
    blank = np.zeros((1, 3, spec.height, spec.width), dtype=np.float32)
    try:
        with torch.inference_mode():
            outputs = model.module(torch.from_numpy(blank).to(model.device))
    except Exception as error:  # any failure inside foreign TorchScript code means the bundle is unusable
        raise ModelError(f"{model.path}: the network fails on a {spec.width} x {spec.height} input "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}).") from None
    expected = [(1, n, 2), (1, n), (1, n)]
    if isinstance(outputs, (tuple, list)):
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in outputs]
    else:
        shapes = f"one {type(outputs).__name__}" + (f" {tuple(outputs.shape)}" if isinstance(outputs, torch.Tensor)
                                                    else "")
    if shapes != expected:
        raise ModelError(f"{model.path}: outputs {shapes} do not match its {n} landmarks; expected a tuple "
                         f"(uv, depth, logit) of tensors shaped {expected}.")


def save_model(module: Any, metadata: ModelMetadata, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Script ``module`` (if needed) and write it with its metadata as one bundle, atomically."""
    import torch

    from .fileio import atomic_path

    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    with atomic_path(path, overwrite=overwrite) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: metadata.to_json()})
