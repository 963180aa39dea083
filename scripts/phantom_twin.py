"""Detect an anny body built like the mesh50_XCAT phantom, beside the phantom itself: is a gap body shape or pose?

The anny man of ``calibrate_anny_landmarks.py`` (the phantom's stature and BMI, posed like him: arms hanging beside
the thighs, legs straight; his joint centres placed by the calibrated rules) is scanned as a CT-like volume a few
times (scan noise and table drawn anew, no field-of-view cut, no tilt) and detected with a model; so are the
phantom's own volumes of the real-anatomy set. Per landmark the script prints the 3D error (mean) and the mean
signed offset (predicted minus reference, R / A / S mm) on both. Where the model is right on the twin and wrong on
the phantom, the difference lies in the body's shape, which the twin shares only in size and pose.

    python scripts/phantom_twin.py [--model wholebody-ct] [--scans 3] [--set out/real_anatomy/body]

Needs the ``train`` extra (anny) and ``../shared/data/xcat-mesh50-wholebody``; the set is built with
make_real_anatomy_set.py where it is missing (about 2 minutes); the twin takes about a minute.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import calibrate_anny_landmarks as calibration
import numpy as np
from numpy.typing import NDArray

from LandmarkDetectorLib.markups import read_markups
from LandmarkDetectorLib.model import load_model
from LandmarkDetectorLib.pipeline import detect_landmarks
from LandmarkDetectorLib.synthetic import anny_body
from LandmarkDetectorLib.synthetic.scan import CTScanConfig
from LandmarkDetectorLib.training.finetune import find_cases
from LandmarkDetectorLib.volume_io import read_volume

REPO = Path(__file__).resolve().parents[1]
TWIN_SCAN = CTScanConfig(in_plane_mm=(1.5, 1.5), slice_mm=(3.0, 3.0), fov_mm=(700.0, 700.0), p_cut=0.0,
                         p_prone=0.0, p_feet_first=0.0, p_oblique=0.0)
"""The twin's scans: like the phantom's 3 mm volumes, the whole body in the field, supine, head first."""


def offsets(model, volume: NDArray, ijk_to_ras: NDArray, truth: dict[str, NDArray]) -> dict[str, NDArray]:
    """Predicted minus reference (RAS mm) of each model landmark the reference has."""
    result = detect_landmarks(volume, ijk_to_ras, model, "cpu")
    return {name: result.points_ras[n] - truth[name] for n, name in enumerate(result.names) if name in truth}


def row(values: list[NDArray]) -> str:
    if not values:
        return "- | -"
    v = np.array(values)
    return f"{np.linalg.norm(v, axis=1).mean():.1f} | " + " / ".join(f"{c:+.0f}" for c in v.mean(axis=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="wholebody-ct", help="bundled model name or .pt path")
    parser.add_argument("--scans", type=int, default=3, help="CT-like scans of the twin (noise and table)")
    parser.add_argument("--set", type=Path, default=REPO / "out" / "real_anatomy" / "body",
                        help="the body set of make_real_anatomy_set.py (built when missing)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    model = load_model(args.model, "cpu")
    twin = calibration.xcat_like_body(*calibration.stature_and_bmi(*calibration.xcat_skin_ras(args.data)))
    truth = dict(zip(anny_body.BODY_LANDMARKS, twin.landmarks_ras[0], strict=True))
    twin_offsets: dict[str, list[NDArray]] = {}
    for seed in range(args.scans):
        scan = anny_body.anny_ct_scan(twin, np.random.default_rng(seed), TWIN_SCAN)
        for name, offset in offsets(model, scan.voxels_kji, scan.ijk_to_ras, truth).items():
            twin_offsets.setdefault(name, []).append(offset)
    if not args.set.is_dir():
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_real_anatomy_set.py"), "--anatomy", "body",
                        "--out", str(args.set)], check=True)
    cases = [(v, m) for v, m in find_cases(args.set) if v.name.startswith("xcat_m50")]
    phantom_offsets: dict[str, list[NDArray]] = {}
    for volume_path, marks_path in cases:
        volume = read_volume(volume_path)
        reference = read_markups(marks_path)
        known = {p.label: np.asarray(p.position_ras) for p in reference.points if p.status == "defined"}
        for name, offset in offsets(model, volume.voxels_kji, volume.ijk_to_ras, known).items():
            phantom_offsets.setdefault(name, []).append(offset)
    print(f"{model.metadata.name}: anny twin of the mesh50_XCAT man ({twin.info[0]['height_mm']:.0f} mm, BMI "
          f"{twin.info[0]['bmi']:.1f}; {args.scans} scans) beside the phantom's {len(cases)} volumes "
          "(real-anatomy phantoms, not CT); 3D error mean (mm) and mean offset R / A / S (mm), at every landmark "
          "in view, found or not\n")
    print("| landmark | twin mean | twin offset | phantom mean | phantom offset |\n|---|---|---|---|---|")
    for name in model.metadata.landmarks:
        print(f"| {name} | {row(twin_offsets.get(name, []))} | {row(phantom_offsets.get(name, []))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
