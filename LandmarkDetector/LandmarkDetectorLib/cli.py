"""The ``landmark-detector`` command line.

Exit codes: 0 success, 1 a case failed, 2 usage error (argparse's convention). Errors are printed as one line
without a Python traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import LandmarkDetectorError
from .fileio import atomic_open, check_writable_target

logger = logging.getLogger("landmark_detector")

Command = Callable[[argparse.Namespace], int]


def positive_float(text: str) -> float:
    """argparse type: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative number")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_projection_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ProjectionConfig shared by every command that projects a volume."""
    group = parser.add_argument_group("projection")
    group.add_argument("--threshold", type=finite_float, default=None,
                       help="body/air intensity threshold (default: -500 HU for CT, Otsu for MR)")
    group.add_argument("--table-removal-mm", type=non_negative_float, default=None,
                       help="minimum body thickness along a ray, removes the CT table (default 15; 0 disables)")
    group.add_argument("--pixel-spacing", type=positive_float, default=None, metavar="MM",
                       help="output pixel size in mm (default: the voxel spacing)")
    group.add_argument("--view", choices=("ap", "lr"), default="ap",
                       help="ap: front view (default); lr: side view from the patient's left")


def projection_config(args: argparse.Namespace):  # -> ProjectionConfig
    """ProjectionConfig from the projection options (defaults come from the dataclass)."""
    from .projection import ProjectionConfig

    values = {"threshold": args.threshold, "pixel_spacing_mm": args.pixel_spacing, "view": args.view}
    if args.table_removal_mm is not None:
        values["table_removal_mm"] = args.table_removal_mm
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
    image = project_volume(volume.voxels_kji, volume.ijk_to_ras, projection_config(args))
    write_png(targets[0], silhouette_to_uint8(image.silhouette), overwrite=args.overwrite)
    write_png(targets[1], depth_to_uint8(image), overwrite=args.overwrite)
    info = {
        "volume": str(Path(args.volume).resolve()),
        "view": image.view,
        "shape_vu": list(image.shape),
        "pixel_spacing_mm": list(image.pixel_spacing_mm),
        "threshold": image.threshold,
        "table_removal_mm": projection_config(args).table_removal_mm,
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all sub-commands."""
    parser = argparse.ArgumentParser(
        prog="landmark-detector",
        description="Detect anatomical landmarks in CT and MR volumes (Riegler et al.'s projection method).")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks and debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("project", help="project a volume to the silhouette and depth images the network sees",
                       description="Write silhouette.png, depth.png and projection.json (pixel to RAS mapping).")
    p.add_argument("volume", help="volume file (.nrrd, .nii, .nii.gz, .mha, .mhd) or DICOM series folder")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_projection_arguments(p)
    p.set_defaults(func=command_project)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``landmark-detector``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return int(args.func(args))
    except (LandmarkDetectorError, FileExistsError, OSError) as error:
        if args.debug:
            raise
        print(f"landmark-detector {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("landmark-detector: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
