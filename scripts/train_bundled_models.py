"""Train, evaluate and bundle the shipped models: the one recorded command behind every number in the model cards.

    python scripts/train_bundled_models.py --anatomy hand     # -> hand-mr
    python scripts/train_bundled_models.py --anatomy body     # -> wholebody-ct

For the anatomy it trains both network families on synthetic renders (fixed seeds), evaluates each on held-out
synthetic 3D volumes through the whole projection path (seeds never used in training) together with the
mean-depth and NN(syn) baselines, bundles the better network into LandmarkDetector/Resources/Models/, records
its SHA-256, and writes the model card LandmarkDetector/Resources/ModelCards/<name>.md (it ships with the module).
Runs on 2 CPU cores; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from LandmarkDetectorLib.framing import CanvasSpec
from LandmarkDetectorLib.model import BUNDLED_DIR, CHECKSUM_FILE, load_model
from LandmarkDetectorLib.projection import ProjectionConfig
from LandmarkDetectorLib.training.data import SyntheticSource
from LandmarkDetectorLib.training.evaluate import (
    Reference,
    calibrate_threshold,
    evaluate_synthetic_volumes,
    markdown_table,
    summary,
)
from LandmarkDetectorLib.training.train import TrainConfig, export, train

REPO = Path(__file__).resolve().parents[1]
EVALUATION_SEED = {"body": 910_001, "hand": 910_002}  # never used by training (training uses seeds 1 and 2)
CALIBRATION_SEED = {"body": 920_001, "hand": 920_002}  # volumes that set the confidence threshold
CALIBRATION_VOLUMES = 60

RECIPES = {
    "body": {
        "name": "wholebody-ct",
        "config": dict(anatomy="body", canvas=CanvasSpec(height=240, width=112, pixel_spacing_mm=10.0),
                       projection=ProjectionConfig(table_removal_mm=15.0), batch_size=32, seed=1,
                       unet_levels=(16, 24, 32, 48, 64)),
        "steps": {"heatmap-unet": 2400, "regression-cnn": 600},
        "description": "Whole-body CT: 9 landmarks (head top, shoulders, middle fingertips, knees, big toes).",
        "limits": [
            "The middle fingertips are the weakest landmarks (95th percentile about 40 mm): at 10 mm pixels a "
            "hand beside the thigh or on the belly is a few pixels wide.",
            "Scans of the head alone (a brain MR) are outside the training fields of view: the head top is then "
            "not found.",
        ],
    },
    "hand": {
        "name": "hand-mr",
        "config": dict(anatomy="hand", canvas=CanvasSpec(height=128, width=96, pixel_spacing_mm=3.0),
                       projection=ProjectionConfig(table_removal_mm=0.0, surface_min_mm=0.0), batch_size=32, seed=2),
        "steps": {"heatmap-unet": 1500, "regression-cnn": 1500},
        "description": "Left-hand MR, palm down: the 5 fingertips.",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anatomy", choices=sorted(RECIPES), required=True)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "training")
    parser.add_argument("--volumes", type=int, default=100, help="held-out synthetic 3D volumes to evaluate on")
    parser.add_argument("--architectures", nargs="+", default=["heatmap-unet", "regression-cnn"])
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke run; do not bundle)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = RECIPES[args.anatomy]
    results = {}
    for architecture in args.architectures:
        steps = 20 if args.quick else recipe["steps"][architecture]
        config = TrainConfig(architecture=architecture, steps=steps, validate_every=max(10, steps // 10),
                             validation_size=64 if args.quick else 256, **recipe["config"])
        canvas = config.canvas
        run_dir = args.out / f"{recipe['name']}-{architecture}-{steps}-{canvas.width}x{canvas.height}"
        model_path = run_dir / "model.pt"
        if not model_path.exists():
            train(config, run_dir)
        # Evaluate with the recipe's projection (runs exported before a projection setting existed keep the recipe's).
        model = load_model(model_path)
        model.metadata = dataclasses.replace(model.metadata, projection=config.projection)
        # The threshold that reports 97% of out-of-view landmarks as not found, on volumes of their own seed.
        calibration = evaluate_synthetic_volumes(model, args.anatomy, CALIBRATION_SEED[args.anatomy],
                                                 3 if args.quick else CALIBRATION_VOLUMES)
        threshold, rates = calibrate_threshold(calibration)
        model.metadata = dataclasses.replace(model.metadata, confidence_threshold=threshold)
        logging.info("%s: confidence threshold %.2f (%s)", architecture, threshold, rates)
        source = SyntheticSource(args.anatomy, config.canvas)
        reference = Reference.generate(source, 200 if args.quick else 4000, seed=config.seed)
        start = time.perf_counter()
        volumes = 3 if args.quick else args.volumes
        evaluation = evaluate_synthetic_volumes(model, args.anatomy, EVALUATION_SEED[args.anatomy], volumes,
                                                reference)
        results[architecture] = {"summary": summary(evaluation), "model": model_path, "config": config,
                                 "seconds_per_volume": (time.perf_counter() - start) / volumes, "volumes": volumes,
                                 "calibration": {"seed": CALIBRATION_SEED[args.anatomy], "threshold": threshold,
                                                 "volumes": len(calibration["found"]), **rates}}
        print(markdown_table({k: v for k, v in results[architecture]["summary"].items() if k != "detection"},
                             model.metadata.landmarks))
    best = min(results, key=lambda a: results[a]["summary"]["model"]["all"]["mean_mm"])
    if args.quick:
        print(f"quick run done; best {best}")
        return
    bundle(args.anatomy, recipe, results, best)


def bundle(anatomy: str, recipe: dict, results: dict, best: str) -> None:
    """Copy the best network into the module with its metrics, record its SHA-256 and write its model card."""
    chosen = results[best]
    model = load_model(chosen["model"])
    network = torch.jit.load(str(chosen["model"]))
    metrics = {"evaluation": {"volumes": chosen["volumes"],
                              "seed": EVALUATION_SEED[anatomy],
                              **{a: r["summary"] for a, r in results.items()}},
               "calibration": chosen["calibration"]}
    path = BUNDLED_DIR / f"{recipe['name']}.pt"
    BUNDLED_DIR.mkdir(parents=True, exist_ok=True)
    export(network, chosen["config"], path, name=recipe["name"], metrics=metrics, description=recipe["description"],
           training=model.metadata.training, confidence_threshold=chosen["calibration"]["threshold"], overwrite=True)
    sums_path = BUNDLED_DIR / CHECKSUM_FILE
    sums = dict(reversed(line.split(maxsplit=1)) for line in sums_path.read_text().splitlines()) \
        if sums_path.exists() else {}
    sums[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    sums_path.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())))
    card = REPO / "LandmarkDetector" / "Resources" / "ModelCards" / f"{recipe['name']}.md"
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(model_card(recipe, results, best, load_model(path)))
    print(f"bundled {path} ({path.stat().st_size / 1e6:.1f} MB); model card {card}")


def model_card(recipe: dict, results: dict, best: str, model) -> str:
    """The model card: what it is, how it was trained, what it measured."""
    config = results[best]["config"]
    names = model.metadata.landmarks
    detection = results[best]["summary"]["detection"]
    lines = [
        f"# Model card: {recipe['name']}", "",
        recipe["description"], "",
        "## Training",
        f"- Network: {best} ({', '.join(results)} compared below); input canvas {config.canvas.width} x "
        f"{config.canvas.height} px at {config.canvas.pixel_spacing_mm} mm (silhouette, normalized depth, "
        "in-field mask).",
        f"- Data: synthetic {config.anatomy} renders generated on the fly (procedural anatomy, "
        f"LandmarkDetectorLib.synthetic), {config.steps} steps x {config.batch_size} samples, seed {config.seed}, "
        f"{config.optimizer} lr {config.lr}; augmentation: field-of-view cuts, table remnants, holes, foreign "
        "objects, edge and depth noise, tilt.",
        f"- Projection: {json.dumps(config.projection.to_dict())}.",
        f"- Command: `python scripts/train_bundled_models.py --anatomy {config.anatomy}`.", "",
        "## Measured accuracy",
        f"Held-out synthetic 3D volumes (seed {EVALUATION_SEED[config.anatomy]}, never used in training), "
        "through the whole path (projection of the volume, network, back-projection). 3D error in mm:", "",
    ]
    for architecture, result in results.items():
        tables = {"network": result["summary"]["model"]}
        if architecture == best:
            tables.update({"mean-depth baseline": result["summary"]["mean_depth"],
                           "NN(syn)": result["summary"]["nn_syn"]})
        lines += [f"### {architecture} ({result['config'].steps} steps)", "", markdown_table(tables, names)]
    def rate(key: str) -> str:
        return "-" if detection[key] is None else f"{detection[key]:.1%}"

    lines += [
        "## Detection of landmarks outside the field of view",
        f"- Confidence threshold {results[best]['calibration']['threshold']:.2f}: the lowest that reports at least "
        f"97% of the out-of-view landmarks of {results[best]['calibration']['volumes']} calibration volumes (seed "
        f"{results[best]['calibration']['seed']}) as not found (0.5 when none is out of view).",
        f"- Out-of-view landmarks reported as not found: {rate('out_of_view_reported_not_found')} "
        f"of {detection['out_of_view']}.",
        f"- In-view landmarks reported as not found: {rate('in_view_reported_not_found')} of {detection['in_view']}.",
        "",
        "## Limits",
        "- Trained and measured on synthetic anatomy only: no real whole-body CT or hand MR with these landmarks "
        "was available. Expect larger errors on real scans until the model is fine-tuned on a few of them "
        "(`landmark-detector finetune`).",
        *(f"- {limit}" for limit in recipe.get("limits", [])),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
