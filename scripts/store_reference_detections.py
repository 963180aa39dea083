"""Store the bundled models' detections on their held-out test volumes as the reference that
``Testing/Core/test_bundled_models.py`` holds later code to (the same landmarks to 0.01 mm, the same found flags).

Run it with the code to keep results of first on the path, e.g. before a change that must not alter results::

    git archive main LandmarkDetector | tar -x -C /tmp/reference
    PYTHONPATH=/tmp/reference/LandmarkDetector python scripts/store_reference_detections.py

Each model's entry carries the SHA-256 of its bundle: the test compares only while the bundled model is that one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from LandmarkDetectorLib.model import BUNDLED_DIR, load_model, sha256_of
from LandmarkDetectorLib.pipeline import detect_landmarks
from LandmarkDetectorLib.synthetic.dataset import synthesize_case

ANATOMY = {"hand-mr": "hand", "wholebody-ct": "body"}
SEED, CASES = 777_001, 10  # Testing/Core/test_bundled_models.py's held-out volumes
OUT = Path(__file__).resolve().parents[1] / "Testing" / "Data" / "reference_detections.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=OUT, help=f"JSON file (default {OUT})")
    args = parser.parse_args()
    reference = {"seed": SEED, "cases": CASES, "models": {}}
    for path in sorted(BUNDLED_DIR.glob("*.pt")):
        model = load_model(path.stem, "cpu")
        detections = []
        for index in range(CASES):
            scan = synthesize_case(ANATOMY[path.stem], SEED, index)
            result = detect_landmarks(scan.voxels_kji, scan.ijk_to_ras, model, "cpu")
            found = result.found if hasattr(result, "found") else result.in_view  # its name before issue 15
            detections.append({"points_ras": result.points_ras.round(6).tolist(), "found": found.tolist()})
        reference["models"][path.stem] = {"sha256": sha256_of(path), "detections": detections}
    args.out.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"{', '.join(reference['models'])}: {CASES} volumes each -> {args.out}")


if __name__ == "__main__":
    main()
