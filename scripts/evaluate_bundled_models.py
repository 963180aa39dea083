"""Evaluate bundled models again on the held-out synthetic volumes their model cards report, with today's code.

    python scripts/evaluate_bundled_models.py [--model wholebody-ct hand-mr] [--volumes 100]

Reads the evaluation seed that ``train_bundled_models.py`` stored in each bundle, detects the landmarks of the first
``--volumes`` volumes of that seed (the model cards report 100) through the whole projection path, and prints the 3D
error (mean / median / p95 / max, mm) next to the numbers stored at bundling, so that a change of the projection or
the pipeline shows in the accuracy it costs or gains.
"""

from __future__ import annotations

import argparse

from LandmarkDetectorLib.model import load_model
from LandmarkDetectorLib.training.evaluate import evaluate_synthetic_volumes, summary

ANATOMY = {"wholebody-ct": "body", "hand-mr": "hand"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=sorted(ANATOMY), choices=sorted(ANATOMY))
    parser.add_argument("--volumes", type=int, default=100, help="volumes to evaluate (default 100, as the cards)")
    args = parser.parse_args()
    for name in args.model:
        model = load_model(name)
        stored = model.metadata.metrics["evaluation"]
        now = summary(evaluate_synthetic_volumes(model, ANATOMY[name], stored["seed"], args.volumes))["model"]["all"]
        architecture = model.metadata.architecture
        then = stored[architecture]["model"]["all"]
        print(f"{name}: {args.volumes} volumes of seed {stored['seed']}, 3D error mean / median / p95 / max (mm)")
        for label, values in (("at bundling", then), ("now", now)):
            print(f"  {label:12s} {values['mean_mm']:6.2f} {values['median_mm']:6.2f} {values['p95_mm']:6.2f} "
                  f"{values['max_mm']:7.2f}   (n = {values['n']})")


if __name__ == "__main__":
    main()
