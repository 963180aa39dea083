"""Fine-tuning on a small shifted domain: does a few annotated scans' worth of data help the synthetic model?

    python scripts/finetune_demo.py --model hand-mr --cases 20 --out out/finetune-demo

Writes ``--cases`` MR-like hand volumes from a shifted distribution (thumbs spread wider, fingers more flexed,
the hand rolled further, coarser and partly oblique scans: what a clinic's protocol might differ in), with their
ground truth, then runs ``landmark-detector finetune`` on them with 5-fold cross-validation and prints the report:
the cross-validated error of the fine-tuned model next to the synthetic-only model on the same cases.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np

from LandmarkDetectorLib.markups import write_markups
from LandmarkDetectorLib.synthetic.dataset import ground_truth
from LandmarkDetectorLib.synthetic.hand import build_hand, sample_hand
from LandmarkDetectorLib.synthetic.scan import MRScanConfig, mr_hand_scan
from LandmarkDetectorLib.training.finetune import FinetuneConfig, finetune, report_markdown
from LandmarkDetectorLib.volume_io import write_volume

SHIFTED_SCANS = MRScanConfig(in_plane_mm=(1.2, 1.6), slice_mm=(2.0, 3.0), p_oblique=0.5)


def shifted_hand(rng: np.random.Generator):
    """A hand from outside the pretraining distribution."""
    params = sample_hand(rng)
    return build_hand(dataclasses.replace(
        params, thumb_abduction_deg=params.thumb_abduction_deg + 25.0,
        flexion_deg=tuple(f + 12.0 for f in params.flexion_deg), roll_deg=params.roll_deg + 18.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hand-mr")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("out/finetune-demo"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = args.out / "cases"
    data.mkdir(parents=True, exist_ok=True)
    for index in range(args.cases):
        name = f"shifted_hand_{index:03d}"
        if (data / f"{name}.nii.gz").exists():
            continue
        rng = np.random.default_rng([4242, index])
        scan = mr_hand_scan(shifted_hand(rng), rng, SHIFTED_SCANS)
        write_volume(data / f"{name}.nii.gz", scan.voxels_kji, scan.ijk_to_ras)
        write_markups(data / f"{name}.mrk.json", ground_truth(scan, name))
    result = finetune(args.model, data, args.out / "finetuned.pt",
                      FinetuneConfig(steps=args.steps, folds=args.folds), overwrite=True)
    print(report_markdown(result))
    pretrained, tuned = result["pretrained"]["all"], result["finetuned_cross_validated"]["all"]
    print(f"mean 3D error over all landmarks: synthetic-only {pretrained['mean_mm']:.2f} mm, "
          f"fine-tuned (cross-validated) {tuned['mean_mm']:.2f} mm")


if __name__ == "__main__":
    main()
