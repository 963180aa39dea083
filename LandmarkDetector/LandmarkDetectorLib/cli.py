"""The ``landmark-detector`` command line.

Exit codes: 0 success, 1 a case failed, 2 usage error (argparse's convention). Errors are printed as one line
without a Python traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, LandmarkDetectorError, UsageError
from .fileio import atomic_open, check_writable_target

logger = logging.getLogger("landmark_detector")

Command = Callable[[argparse.Namespace], int]


def _number(convert: Callable[[str], float], accept: Callable[[float], bool], what: str) -> Callable[[str], Any]:
    """An argparse type that converts a value and checks it, with SimpleITK-style messages."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what.split(" ", 1)[1]  # argparse names the type in its messages
    return parse


positive_float = _number(float, lambda v: bool(np.isfinite(v) and v > 0), "a positive number")
non_negative_float = _number(float, lambda v: bool(np.isfinite(v) and v >= 0), "a non-negative number")
finite_float = _number(float, lambda v: bool(np.isfinite(v)), "a finite number")
positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")


def add_projection_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ProjectionConfig shared by every command that projects a volume."""
    group = parser.add_argument_group("projection")
    group.add_argument("--threshold", type=finite_float, default=None,
                       help="body/air intensity threshold (default: -500 HU for CT, Otsu for MR)")
    group.add_argument("--table-removal-mm", type=non_negative_float, default=None,
                       help="minimum body thickness along a ray, removes the CT table (default 15; 0 disables)")
    group.add_argument("--surface-min-mm", type=non_negative_float, default=None,
                       help="skip layers thinner than this in front of the body surface, e.g. a table plate in "
                            "front of a prone patient (default 5; 0 takes the first voxel)")
    group.add_argument("--pixel-spacing", type=positive_float, default=None, metavar="MM",
                       help="output pixel size in mm (default: the voxel spacing)")
    group.add_argument("--view", choices=("ap", "lr"), default="ap",
                       help="ap: front view (default); lr: side view from the patient's left")


def projection_config(args: argparse.Namespace):  # -> ProjectionConfig
    """ProjectionConfig from the projection options (defaults come from the dataclass)."""
    from .projection import ProjectionConfig

    values = {"threshold": args.threshold, "pixel_spacing_mm": args.pixel_spacing, "view": args.view}
    for name in ("table_removal_mm", "surface_min_mm"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return ProjectionConfig(**values)


def command_project(args: argparse.Namespace) -> int:
    """Write silhouette.png, depth.png and projection.json for one volume."""
    from .images import depth_to_uint8, silhouette_to_uint8
    from .projection import project_volume
    from .volume_io import read_volume, write_png

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [out_dir / name for name in ("silhouette.png", "depth.png", "projection.json")]
    for target in targets:  # refuse before any work, so nothing is half-written
        check_writable_target(target, args.overwrite)
    volume = read_volume(args.volume)
    config = projection_config(args)
    image = project_volume(volume.voxels_kji, volume.ijk_to_ras, config)
    write_png(targets[0], silhouette_to_uint8(image.silhouette), overwrite=args.overwrite)
    write_png(targets[1], depth_to_uint8(image), overwrite=args.overwrite)
    info = {
        "volume": str(Path(args.volume).resolve()),
        "view": image.view,
        "shape_vu": list(image.shape),
        "pixel_spacing_mm": list(image.pixel_spacing_mm),
        "threshold": image.threshold,
        "projection": config.to_dict(),
        "pixel_to_ras": image.pixel_to_ras.tolist(),
        "pixel_to_ras_help": "RAS mm = pixel_to_ras @ (u, v, d, 1): u = PNG column, v = PNG row (pixel centres at "
                             "integers), d = depth in mm along the ray from the front plane",
        "body_pixels": int(image.silhouette.sum()),
        "depth_mean_mm": image.depth_mean_mm,
        "depth_std_mm": image.depth_std_mm,
        "depth_png_help": "depth.png: 0 = background; 255..1 = nearest..farthest body surface, linear in mm",
    }
    with atomic_open(targets[2], "w", overwrite=args.overwrite) as f:
        json.dump(info, f, indent=2)
    print(f"{args.volume}: {image.shape[1]} x {image.shape[0]} px at "
          f"{image.pixel_spacing_mm[0]:.3g} x {image.pixel_spacing_mm[1]:.3g} mm, threshold {image.threshold:g}, "
          f"{info['body_pixels']} body pixels -> {out_dir}")
    return 0


def add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by detect and batch: model, device, thresholds."""
    parser.add_argument("-m", "--model", default="wholebody-ct",
                        help="model name (see `landmark-detector models`) or .pt file (default wholebody-ct)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the network runs (default auto: CUDA when present)")
    parser.add_argument("--confidence-threshold", type=_number(float, lambda v: 0 <= v <= 1, "a probability"),
                        help="in-view probability needed to call a landmark found, for every landmark (default: the "
                             f"model's, per landmark{_bundled_values(_confidence_threshold)})")
    parser.add_argument("--mirror-tolerance-mm", type=_number(float, lambda v: v > 0, "a positive number"),
                        help="largest disagreement (mm) between the network's estimates on the volume and on its "
                             "left-right mirror at which a landmark is called found, for every landmark; larger "
                             "finds more landmarks, fewer of them right; inf turns the check off (default: the "
                             "model's, per landmark"
                             f"{_bundled_values(_mirror_tolerance)})")
    parser.add_argument("--threshold", type=finite_float,
                        help="body/air intensity threshold (default: the model's setting, automatic)")
    parser.add_argument("--table-removal-mm", type=non_negative_float,
                        help="minimum body thickness along a ray, removes the CT table (default: the model's"
                             f"{_bundled_values(lambda m: f'{m.projection.table_removal_mm:g}')}; 0 disables)")


def _confidence_threshold(metadata: Any) -> str:
    return metadata.found_rule_ranges()[0]


def _mirror_tolerance(metadata: Any) -> str:
    return metadata.found_rule_ranges()[1] or "none"


def _bundled_values(value: Callable[[Any], str]) -> str:
    """": VALUE for NAME, ..." over the bundled models' metadata (read without torch), for help texts."""
    from .model import BUNDLED_DIR, MODEL_SUFFIX, read_metadata

    values = []
    for path in sorted(BUNDLED_DIR.glob(f"*{MODEL_SUFFIX}")):
        try:
            values.append(f"{value(read_metadata(path))} for {path.stem}")
        except LandmarkDetectorError:  # a damaged bundle is reported when it is used, not in the help
            continue
    return ": " + ", ".join(values) if values else ""


def format_landmarks(landmarks: Any) -> str:
    """A plain-text table: landmark, found, confidence, the mirror disagreement in mm (models with a mirror check),
    R A S in mm (no position for landmarks not found)."""
    width = max(len("landmark"), *(len(n) for n in landmarks.names))
    disagreement = landmarks.disagreement_mm
    mirror = bool(np.isfinite(disagreement).any())
    lines = [f"{'landmark':<{width}}  found  confidence" + ("  mirror mm" if mirror else "")
             + "        R        A        S"]
    for n, (name, point, confidence, found) in enumerate(zip(landmarks.names, landmarks.points_ras,
                                                              landmarks.confidence, landmarks.found, strict=True)):
        position = "  ".join(f"{value:7.1f}" for value in point) if found else f"{'-':>7}  {'-':>7}  {'-':>7}"
        agreement = f"  {disagreement[n]:9.1f}" if mirror and np.isfinite(disagreement[n]) else \
            f"  {'-':>9}" if mirror else ""
        lines.append(f"{name:<{width}}  {'yes' if found else 'NO':<5}  {confidence:10.3f}{agreement}  {position}")
    return "\n".join(lines)


def landmarks_json(landmarks: Any, volume: str, model: str, output: str | None, warning: str) -> dict[str, Any]:
    """What ``detect --json`` prints: per landmark its name, found, confidence and the threshold it was held to, mirror
    disagreement and tolerance in mm (null without a mirror check), whether it was withheld for lying within its edge
    margin of the scan's edges, and RAS mm position (null when not found)."""
    tolerances = landmarks.mirror_tolerance_mm
    return {
        "volume": volume, "model": model, "output": output, "coordinate_system": "RAS", "units": "mm",
        "found": int(landmarks.found.sum()), "warning": warning or None,
        "landmarks": [{"name": name, "found": bool(found), "confidence": round(float(confidence), 4),
                       "confidence_threshold": float(threshold),
                       "mirror_disagreement_mm": round(float(disagreement), 2) if np.isfinite(disagreement) else None,
                       "mirror_tolerance_mm": None if tolerances is None else float(tolerances[n]),
                       "near_edge": bool(near_edge),
                       "position_ras": [round(float(v), 3) for v in point] if found else None}
                      for n, (name, point, confidence, found, disagreement, threshold, near_edge) in enumerate(zip(
                          landmarks.names, landmarks.points_ras, landmarks.confidence, landmarks.found,
                          landmarks.disagreement_mm, landmarks.confidence_threshold, landmarks.near_edge,
                          strict=True))],
    }


def command_detect(args: argparse.Namespace) -> int:
    """Detect the landmarks of one volume and write them as a Slicer point list (or print them as JSON)."""
    from .images import pyplot
    from .markups import write_markups
    from .model import load_model
    from .pipeline import detect_landmarks, detection_warning, model_projection, projection_settings
    from .preview import draw_landmarks
    from .volume_io import case_name, read_volume

    if not args.out and not args.json:
        raise UsageError("give --out FILE (.mrk.json, .fcsv or .csv) for the point list, --json to print the "
                         "landmarks, or both.")
    if args.preview:
        pyplot("previews")  # a missing matplotlib stops here, before any work or file
    targets = ([Path(args.out)] if args.out else []) + ([Path(args.preview)] if args.preview else [])
    for target in targets:  # refuse before any work, so nothing is half-written
        check_writable_target(target, args.overwrite)
    volume = read_volume(args.volume)
    model = load_model(args.model, args.device)
    projection = projection_settings(model, args.threshold, args.table_removal_mm)
    landmarks = detect_landmarks(volume.voxels_kji, volume.ijk_to_ras, model, args.device,
                                 confidence_threshold=args.confidence_threshold,
                                 mirror_tolerance_mm=args.mirror_tolerance_mm, projection=projection)
    if args.out:
        write_markups(args.out, landmarks.to_point_list(case_name(args.volume)), overwrite=args.overwrite)
    if args.preview:
        spacing = min(model.metadata.canvas.pixel_spacing_mm, 3.0)  # finer than the network's view, for people
        image = model_projection(volume.voxels_kji, volume.ijk_to_ras, projection,
                                 dataclasses.replace(model.metadata.canvas, pixel_spacing_mm=spacing))
        draw_landmarks(image, landmarks, args.preview, title=f"{Path(args.volume).name}: {model.metadata.name}",
                       overwrite=args.overwrite)
    warning = detection_warning(landmarks, model.metadata, user_threshold=args.threshold is not None)
    if args.json:
        json.dump(landmarks_json(landmarks, str(args.volume), model.metadata.name, args.out, warning), sys.stdout,
                  indent=2)
        print()
        return 0
    print(format_landmarks(landmarks))
    print(f"{int(landmarks.found.sum())} of {len(landmarks.names)} landmarks found -> {args.out}"
          + (f" (preview {args.preview})" if args.preview else ""))
    tolerance = landmarks.mirror_tolerance_mm
    mirrored_out = [] if tolerance is None else [
        f"{name} ({disagreement:.1f} > {limit:g} mm)" for name, confident, disagreement, limit in zip(
            landmarks.names, landmarks.confidence >= landmarks.confidence_threshold, landmarks.disagreement_mm,
            tolerance, strict=True)
        if confident and disagreement > limit]
    if mirrored_out:
        print(f"Not found because the network's estimates on the volume and on its left-right mirror were too far "
              f"apart: {', '.join(mirrored_out)}; --mirror-tolerance-mm loosens this (more found, fewer right).")
    if warning:
        logger.warning(warning)
    return 0


def command_batch(args: argparse.Namespace) -> int:
    """Detect landmarks in every volume of a folder; exit code 1 if any case failed."""
    from .batch import BatchOptions, find_volumes, run_batch, shard_cases, summary_name
    from .progress import progress_bar
    from .volume_io import VOLUME_SUFFIXES

    cases = shard_cases(find_volumes(args.input), args.shard)
    if not cases:
        raise InputError(f"no volumes in {args.input} (looked for {', '.join(VOLUME_SUFFIXES)} files and DICOM folders)"
                         + (f" for shard {args.shard[0]}/{args.shard[1]}" if args.shard else "") + ".")
    options = BatchOptions(model=args.model, device=args.device, output_format=args.format,
                           confidence_threshold=args.confidence_threshold,
                           mirror_tolerance_mm=args.mirror_tolerance_mm, threshold=args.threshold,
                           table_removal_mm=args.table_removal_mm)
    counts = {"ok": 0, "failed": 0, "finished earlier": 0}
    with progress_bar(len(cases), "batch", enabled=not args.quiet) as bar:
        def on_result(result: Any) -> None:
            counts["finished earlier" if result.earlier else result.status] += 1
            bar.update(1)
            bar.set_postfix(failed=counts["failed"], refresh=False)

        run_batch(cases, args.out, options, workers=args.workers, resume=args.resume, overwrite=args.overwrite,
                  shard=args.shard, scheduler=args.scheduler, on_result=on_result)
    done = f"{counts['ok']} ok, {counts['failed']} failed"
    earlier = f"; {counts['finished earlier']} skipped (finished earlier)" if counts["finished earlier"] else ""
    print(f"{done}{earlier} -> {Path(args.out) / summary_name(args.shard)}")
    return 1 if counts["failed"] else 0


def command_evaluate(args: argparse.Namespace) -> int:
    """Compare predicted landmark files with reference ones; write report.json, report.md and, with matplotlib,
    plots."""
    from .evaluation import compare_cases, write_report
    from .images import pyplot
    from .plots import error_bars, error_cdf

    names = [Path(p).resolve().name or str(p) for p in args.pred]
    methods = {(name if names.count(name) == 1 else f"{name}-{i + 1}"): p
               for i, (name, p) in enumerate(zip(names, args.pred, strict=True))}
    try:
        pyplot("plots")
        plots = True
    except InputError as error:  # Slicer's Python: the report without its pictures
        logger.warning("%s Writing report.json and report.md without plots.", error)
        plots = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    outputs = ["report.json", "report.md"]
    outputs += ["errors_by_landmark.png", "error_cdf.png"] + (["worst_cases.png"] if args.volumes else []) \
        if plots else []
    for name in outputs:  # refuse before any work, so nothing is half-written
        check_writable_target(out / name, args.overwrite)
    comparisons, warnings = compare_cases(methods, args.truth)
    stats = write_report(out, comparisons, warnings, overwrite=args.overwrite)
    if plots:
        error_bars(stats, out / "errors_by_landmark.png", overwrite=args.overwrite)
        error_cdf(comparisons, out / "error_cdf.png", overwrite=args.overwrite)
        if args.volumes:
            _draw_worst_cases(comparisons, methods, args, out / "worst_cases.png")
    for method, table in stats.items():
        a = table["all"]
        summary = (f"mean {a['mean_mm']:.1f} mm, median {a['median_mm']:.1f}, p95 {a['p95_mm']:.1f}, max "
                   f"{a['max_mm']:.1f}" if a["n"] else "no landmark both in view and found")
        print(f"{method}: {a['n']} landmarks, {summary}; not found {a['not_found']}/{a['in_view']}, wrongly found "
              f"{a['wrongly_found']}/{a['out_of_view']}")
    print(f"report: {out / 'report.md'}" + (f" ({len(warnings)} warnings)" if warnings else ""))
    return 0


def _draw_worst_cases(comparisons: list[Any], methods: dict[str, str], args: argparse.Namespace, path: Path) -> None:
    """Project the volumes of the six worst cases of the first method and draw them with their landmarks."""
    from .batch import find_volumes
    from .evaluation import landmark_files, ranked_cases
    from .markups import read_markups
    from .plots import worst_cases
    from .projection import ProjectionConfig, project_volume
    from .volume_io import read_volume

    method = next(iter(methods))
    volumes = {c.name: c.path for c in find_volumes(args.volumes)}
    chosen = [(case, mean) for case, mean in ranked_cases(comparisons, method) if case in volumes and mean >= 0][:6]
    if not chosen:
        logger.warning("no volume in %s matches a case with a measured error; worst_cases.png not written.",
                       args.volumes)
        return
    predicted_files, truth_files = landmark_files(methods[method]), landmark_files(args.truth)
    images = {}
    for case, _ in chosen:
        volume = read_volume(volumes[case])
        images[case] = project_volume(volume.voxels_kji, volume.ijk_to_ras,
                                      ProjectionConfig(table_removal_mm=0.0, pixel_spacing_mm=3.0))
    worst_cases(chosen, images, {c: read_markups(predicted_files[c]) for c, _ in chosen},
                {c: read_markups(truth_files[c]) for c, _ in chosen}, path, overwrite=args.overwrite)


def command_synth(args: argparse.Namespace) -> int:
    """Write synthetic volumes with ground-truth landmarks (DIR/<case>.<format> and DIR/<case>.mrk.json)."""
    from .progress import progress_bar
    from .synthetic.dataset import synthesize_dataset

    with progress_bar(args.count, f"synth {args.anatomy}", enabled=not args.quiet) as bar:
        def progress(fraction: float, message: str) -> None:
            bar.update(round(fraction * args.count) - bar.n)
            bar.set_postfix_str(message.split("] ")[-1])

        paths = synthesize_dataset(args.anatomy, args.count, args.seed, args.out, fmt=args.format,
                                   overwrite=args.overwrite, progress=progress, generator=args.generator)
    print(f"wrote {len(paths)} {args.anatomy} cases ({args.generator}, seed {args.seed}) to {args.out}")
    return 0


def command_models(args: argparse.Namespace) -> int:
    """List bundled and user models with their landmarks."""
    from .model import available_models, measured_error_text, read_metadata, user_models_dir

    models = available_models()
    for name, path in models.items():
        try:
            metadata = read_metadata(path)
        except LandmarkDetectorError as error:
            print(f"{name}: unusable ({error})")
            continue
        spec = metadata.canvas
        print(f"{name}  [{metadata.architecture}, {spec.width} x {spec.height} px at {spec.pixel_spacing_mm} mm]  "
              f"{path}")
        if metadata.description:
            print(f"    {metadata.description}")
        print(f"    landmarks: {', '.join(metadata.landmarks)}")
        accuracy = measured_error_text(metadata)
        if accuracy:
            print(f"    measured 3D error (mean / median): {accuracy}")
    print(f"({len(models)} models; user models are read from {user_models_dir()})")
    return 0


def command_train(args: argparse.Namespace) -> int:
    """Pretrain a network on synthetic data generated on the fly."""
    from .training.train import TrainConfig, train

    values = json.loads(Path(args.config).read_text()) if args.config else {}
    overrides = {"anatomy": args.anatomy, "architecture": args.architecture, "steps": args.steps,
                 "batch_size": args.batch_size, "seed": args.seed, "workers": args.workers, "threads": args.threads,
                 "lr": args.lr, "optimizer": args.optimizer}
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig.from_dict(values)
    path = train(config, args.out)
    print(f"model written to {path}; log {Path(args.out) / 'log.csv'}, config {Path(args.out) / 'config.json'}")
    return 0


def command_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a model on annotated volumes with cross-validation."""
    from .model import user_models_dir
    from .training.finetune import FinetuneConfig, finetune, report_markdown

    defaults = FinetuneConfig()
    config = FinetuneConfig(steps=args.steps or defaults.steps, folds=0 if args.leave_one_out else args.folds,
                            seed=args.seed, threads=args.threads)
    out = Path(args.out) if args.out else user_models_dir() / f"{Path(args.model).stem}-finetuned.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    landmarks = tuple(n.strip() for n in args.landmarks.split(",")) if args.landmarks else None
    result = finetune(args.model, args.data, out, config, landmarks=landmarks, overwrite=args.overwrite)
    print(report_markdown(result))
    print(f"fine-tuned model written to {out} (report: {out.with_suffix('.md')})")
    return 0


def _shard(text: str) -> tuple[int, int]:
    """argparse type of --shard: "K/N" with 1 <= K <= N."""
    from .batch import parse_shard

    try:
        return parse_shard(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _point_list_file(text: str) -> str:
    """argparse type of detect's --out: a file name with a point list extension."""
    from .errors import FileFormatError
    from .markups import markups_suffix

    try:
        markups_suffix(text)
    except FileFormatError as error:
        raise argparse.ArgumentTypeError(str(error).rstrip(".")) from None
    return text


def _add_common_arguments(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """--debug, -q and -v, accepted before and after the command. Under a command they default to SUPPRESS, so that
    a flag given before the command is not reset by the command's parser."""
    default = {} if top_level else {"default": argparse.SUPPRESS}
    group = parser.add_argument_group("common options (before or after the command)")
    group.add_argument("--debug", action="store_true", help="show Python tracebacks and debug messages", **default)
    loudness = group.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="show only warnings, errors and the results",
                          **default)
    loudness.add_argument("-v", "--verbose", action="store_true", help="show debug messages too", **default)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all sub-commands."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="landmark-detector",
        description="Detect anatomical landmarks in CT and MR volumes (Riegler et al.'s projection method).",
        epilog="Exit codes: 0 done, 1 failed (the message says why), 2 wrong usage.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common_arguments(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Command, **kwargs: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, **kwargs)
        p.set_defaults(func=func)
        _add_common_arguments(p, top_level=False)
        return p

    p = command("detect", command_detect, help="detect the landmarks of one volume",
                description="Detect anatomical landmarks and write them as a Slicer point list (labels = landmark "
                            "names, confidence in the description; landmarks not found are kept as unplaced "
                            "points). Prints a table of the results, or with --json a JSON document.")
    p.add_argument("volume", help="volume file (.nrrd, .nii, .nii.gz, .mha, .mhd) or DICOM series folder")
    p.add_argument("-o", "--out", type=_point_list_file,
                   help="output point list: .mrk.json, .fcsv or .csv, by extension (default: none; needs --json)")
    p.add_argument("--json", action="store_true",
                   help="print the landmarks as JSON on standard output instead of the table")
    p.add_argument("--preview", metavar="PNG", help="also draw the landmarks over the projection into this PNG "
                                                    "(needs matplotlib; default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_detection_arguments(p)

    p = command("batch", command_batch, help="detect landmarks in every volume of a folder",
                description="Run detection on every volume in INPUT (files and DICOM series folders) and write "
                            "OUT/<case>.mrk.json plus OUT/summary.csv (case, status, seconds, confidence per "
                            "landmark, error). A failing case is recorded and skipped; the exit code is 1 if any "
                            "case failed. Outputs are written atomically, so an interrupted batch continues with "
                            "--resume, which refuses a folder made with another model or settings.",
                epilog="On a cluster: run one job per shard with --shard K/N into the same OUT (each writes "
                       "summary-K-of-N.csv); afterwards `batch INPUT --out OUT --resume` writes the combined "
                       "summary.csv. Or pass --scheduler tcp://HOST:8786 to run the cases on a Dask distributed "
                       "cluster whose workers see INPUT and OUT.")
    p.add_argument("input", help="folder of volumes")
    p.add_argument("-o", "--out", required=True, help="output folder (created if missing)")
    p.add_argument("-f", "--format", choices=("mrk.json", "fcsv", "csv"), default="mrk.json",
                   help="point list format (default mrk.json)")
    p.add_argument("-w", "--workers", type=positive_int, default=1,
                   help="local processes (default 1, which already reads two volumes ahead while it detects the "
                        "current one). More pay off only with free CPU cores and a network on the CPU, when "
                        "detection rather than reading takes the time; on a GPU keep 1")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="skip cases whose output exists (same model and settings only)")
    again.add_argument("--overwrite", action="store_true", help="redo cases whose output exists")
    p.add_argument("--shard", metavar="K/N", type=_shard,
                   help="take only every N-th case starting with the K-th (1 <= K <= N), e.g. --shard "
                        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT (default: all cases)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask distributed scheduler to run the cases on (default: none, run here)")
    add_detection_arguments(p)

    p = command("evaluate", command_evaluate, help="accuracy report: predicted landmark files against reference ones",
                description="Pair cases by file name and landmarks by label (.mrk.json, .fcsv or .csv on either "
                            "side) and write REPORT_DIR/report.json, report.md and, with matplotlib, "
                            "errors_by_landmark.png (mean and standard deviation per landmark, one colour per "
                            "prediction folder), error_cdf.png and, with --volumes, worst_cases.png. A reference "
                            "point that is not defined means out of view; a predicted one that is not defined means "
                            "not found.")
    p.add_argument("--pred", nargs="+", required=True, metavar="DIR",
                   help="folders of predicted landmark files (one per method, named after the folder)")
    p.add_argument("--truth", required=True, metavar="DIR", help="folder of reference landmark files")
    p.add_argument("-o", "--out", required=True, metavar="REPORT_DIR", help="output folder (created if missing)")
    p.add_argument("--volumes", metavar="DIR", help="the cases' volumes, to draw the worst cases of the first method "
                                                    "(default: none, no picture)")
    p.add_argument("--overwrite", action="store_true", help="replace existing report files")

    p = command("project", command_project,
                help="project a volume to the silhouette and depth images the network sees",
                description="Write silhouette.png, depth.png and projection.json (pixel to RAS mapping).")
    p.add_argument("volume", help="volume file (.nrrd, .nii, .nii.gz, .mha, .mhd) or DICOM series folder")
    p.add_argument("-o", "--out", required=True, help="output folder (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_projection_arguments(p)

    p = command("synth", command_synth, help="write synthetic volumes with ground-truth landmarks",
                description="Write CT-like whole bodies or MR-like left hands as DIR/<case>.nii.gz (or .nrrd) with "
                            "ground truth DIR/<case>.mrk.json; the same seed gives identical files.")
    p.add_argument("--anatomy", choices=("body", "hand"), required=True, help="whole-body CT or left-hand MR")
    p.add_argument("--generator", choices=("primitive", "anny"), default="primitive",
                   help="bodies and hands built from primitive shapes, or from the anny body model (needs the "
                        "train extra) (default primitive)")
    p.add_argument("-n", "--count", type=positive_int, required=True, help="number of cases")
    p.add_argument("--seed", type=non_negative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("-o", "--out", required=True, help="output folder (created if missing)")
    p.add_argument("-f", "--format", choices=("nii.gz", "nrrd"), default="nii.gz",
                   help="volume format (default nii.gz)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")

    command("models", command_models, help="list the bundled and user models with their landmarks")

    from_config = "default: from --config, else built in"
    p = command("train", command_train, help="pretrain a network on synthetic data generated on the fly",
                description="Train on synthetic renders; writes config.json, log.csv, checkpoint.pt and the model "
                            "bundle model.pt into --out. Flags override the --config JSON file.")
    p.add_argument("--anatomy", choices=("body", "hand"),
                   help=f"whole body (9 landmarks) or left hand (5) ({from_config}: body)")
    p.add_argument("--config", help="JSON file with TrainConfig fields (default: none)")
    p.add_argument("-o", "--out", required=True, help="run folder (created; must not hold a model.pt yet)")
    p.add_argument("--architecture", choices=("heatmap-unet", "regression-cnn"),
                   help=f"network ({from_config}: heatmap-unet)")
    p.add_argument("--steps", type=positive_int, help=f"optimizer steps ({from_config})")
    p.add_argument("--batch-size", type=positive_int, help=f"samples per step ({from_config})")
    p.add_argument("--lr", type=positive_float, help=f"initial learning rate ({from_config})")
    p.add_argument("--optimizer", choices=("adamw", "sgd"),
                   help=f"sgd uses the paper's schedule ({from_config}: adamw)")
    p.add_argument("--seed", type=non_negative_int, help=f"makes the run repeatable ({from_config})")
    p.add_argument("-w", "--workers", type=non_negative_int, help=f"data-generating processes ({from_config})")
    p.add_argument("--threads", type=positive_int, help=f"CPU threads for the network ({from_config})")

    p = command("finetune", command_finetune,
                help="fine-tune a model on your annotated volumes, with cross-validation",
                description="DATA holds volumes with same-named landmark files (case.nii.gz + case.mrk.json, .fcsv "
                            "or .csv). Reports the cross-validated error per landmark, then fine-tunes on all cases "
                            "and saves the model.")
    p.add_argument("data", help="folder of annotated volumes")
    p.add_argument("-m", "--model", default="wholebody-ct",
                   help="model to start from: name or .pt path (default wholebody-ct)")
    p.add_argument("-o", "--out", help="new model file (default: <model>-finetuned.pt in the user model folder)")
    folds = p.add_mutually_exclusive_group()
    folds.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds (default 5)")
    folds.add_argument("--leave-one-out", action="store_true", help="leave-one-out cross-validation")
    p.add_argument("--landmarks", help="comma-separated names for a model of your own landmarks (default: the "
                                       "model's landmarks)")
    p.add_argument("--steps", type=positive_int, help="optimizer steps per fold (default: FinetuneConfig's, 300)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="makes the run repeatable (default 0)")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads for the network (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    return parser


_API_WORDING = re.compile(r"\b(overwrite|resume)=True(?: \(--\w+\))?")


def cli_wording(message: str) -> str:
    """A core message as the command line says it: the flag instead of the Python keyword (``--overwrite`` for
    ``overwrite=True``)."""
    return _API_WORDING.sub(lambda match: f"--{match[1]}", message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``landmark-detector``; returns the exit code (0 done, 1 failed, 2 wrong usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug or args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(format="%(levelname)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when logging was set up before (a second main() in one process)
    try:
        return int(args.func(args))
    except (UsageError, FileExistsError) as error:  # an existing output, a resume with other settings
        if args.debug:
            raise
        print(f"landmark-detector {args.command}: error: {cli_wording(str(error))}", file=sys.stderr)
        return 2
    except (LandmarkDetectorError, OSError) as error:
        if args.debug:
            raise
        print(f"landmark-detector {args.command}: error: {cli_wording(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("landmark-detector: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
