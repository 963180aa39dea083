"""Measure a whole-body or hand model on a real-anatomy development set (mesh50_XCAT and HRA Visible Human phantoms).

    python scripts/evaluate_real_anatomy.py [--model wholebody-ct] [--set out/real_anatomy/body]
    python scripts/evaluate_real_anatomy.py --anatomy hand [--model hand-mr] [--set out/real_anatomy/hand]

Builds the set with make_real_anatomy_set.py where cases are missing, detects every case with
``landmark-detector batch``, compares with the reference files (``landmark-detector evaluate``'s pairing), and prints
per landmark: cases in view, reported found, 3D error mean / median / max (mm), the share of found landmarks within
30 mm (bodies) or 5 mm (hands), the mean signed error (predicted minus reference, R / A / S mm: a systematic offset
shows here; ``--mirror-tolerance-mm inf`` takes in more points), and out-of-view landmarks reported found. These
are real-anatomy phantoms, not CT or MR scans.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import make_real_anatomy_set as make
import numpy as np

from LandmarkDetectorLib import cli
from LandmarkDetectorLib.evaluation import Comparison, compare_cases

REPO = Path(__file__).resolve().parents[1]


def table(rows: list[Comparison], within_mm: float) -> str:
    """Per-landmark results as a Markdown table, with a row over all landmarks."""
    labels = list(dict.fromkeys(c.landmark for c in rows))
    lines = [f"| landmark | in view | found | mean | median | max | found within {within_mm:g} mm | "
             "mean offset R / A / S | out of view, found |", "|---|---|---|---|---|---|---|---|---|"]
    for label in labels + ["all"]:
        group = [c for c in rows if label in ("all", c.landmark)]
        in_view = [c for c in group if c.truth_in_view]
        found = [c for c in in_view if c.found]
        errors = np.array([c.error_mm for c in found])
        numbers = (f"{errors.mean():.1f} | {np.median(errors):.1f} | {errors.max():.1f} | "
                   f"{np.mean(errors <= within_mm):.0%} | "
                   + " / ".join(f"{v:+.0f}" for v in np.mean([c.offset_ras_mm for c in found], axis=0))
                   ) if errors.size else "- | - | - | - | -"
        wrongly = sum(c.found for c in group if not c.truth_in_view)
        name = f"**{label}**" if label == "all" else label
        lines.append(f"| {name} | {len(in_view)} | {len(found)} | {numbers} | "
                     f"{wrongly}/{len(group) - len(in_view)} |")
    return "\n".join(lines)


def case_table(rows: list[Comparison]) -> str:
    """3D error (mm) per case and landmark; "nf" not found, "oov" out of view (and not found), "oov!" found."""
    labels = list(dict.fromkeys(c.landmark for c in rows))
    lines = ["| case | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for case in dict.fromkeys(c.case for c in rows):
        cells = {c.landmark: c for c in rows if c.case == case}
        text = []
        for label in labels:
            c = cells.get(label)
            if c is None:
                text.append("")
            elif not c.truth_in_view:
                text.append("oov!" if c.found else "oov")
            else:
                text.append(f"{c.error_mm:.0f}" if c.found else "nf")
        lines.append(f"| {case} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--anatomy", choices=("body", "hand"), default="body", help="which set")
    parser.add_argument("--model", help="bundled model name or .pt path (default wholebody-ct or hand-mr)")
    parser.add_argument("--set", type=Path,
                        help="folder of the set (cases missing there are built; default out/real_anatomy/<anatomy>)")
    parser.add_argument("--pred", type=Path, help="folder for the predictions (default: <set>_pred_<model>)")
    parser.add_argument("--within-mm", type=float,
                        help="distance that counts a found landmark right (default 30 for bodies, 5 for hands)")
    parser.add_argument("--mirror-tolerance-mm",
                        help="detect with this mirror tolerance instead of the model's (e.g. to compare two models "
                             "at the same one)")
    args = parser.parse_args(argv)
    hand = args.anatomy == "hand"
    args.model = args.model or ("hand-mr" if hand else "wholebody-ct")
    args.set = args.set or REPO / "out" / "real_anatomy" / args.anatomy
    args.within_mm = args.within_mm or (5.0 if hand else 30.0)
    missing = [c.name for c in (make.HAND_CASES if hand else make.CASES)
               if not (args.set / f"{c.name}.nii.gz").is_file() or not (args.set / f"{c.name}.mrk.json").is_file()]
    build = ["--anatomy", args.anatomy, "--out", str(args.set), "--overwrite", "--cases", *missing]
    if missing and make.main(build) != 0:
        return 1
    pred = args.pred or args.set.with_name(f"{args.set.name}_pred_{Path(args.model).stem}")
    tolerance = ["--mirror-tolerance-mm", args.mirror_tolerance_mm] if args.mirror_tolerance_mm else []
    status = cli.main(["batch", str(args.set), "--out", str(pred), "--model", args.model, "--overwrite", *tolerance])
    rows, _ = compare_cases({args.model: pred}, args.set)
    print(f"\n{args.model} on the real-anatomy development set ({len({c.case for c in rows})} cases; "
          f"real-anatomy phantoms, not {'MR' if hand else 'CT'} scans); 3D error in mm\n")
    print(table(rows, args.within_mm))
    print()
    print(case_table(rows))
    return status


if __name__ == "__main__":
    sys.exit(main())
