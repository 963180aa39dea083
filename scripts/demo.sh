#!/usr/bin/env bash
# Sets up .venv (Python >= 3.10 and pip are enough) and runs the main job on a volume:
#   bash scripts/demo.sh                 # a synthetic whole-body CT that the project generates
#   bash scripts/demo.sh VOLUME [OUT]    # your NRRD / NIfTI / MetaImage file or DICOM series folder
# Results go to OUT (default out/demo): silhouette.png, depth.png, projection.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[train]"
OUT=${2:-out/demo}
if [ $# -ge 1 ]; then
  VOLUME=$1
else
  .venv/bin/landmark-detector synth --anatomy body --count 1 --seed 2026 --out "$OUT/synthetic" --overwrite
  VOLUME="$OUT/synthetic/body_s2026_0000.nii.gz"
fi
.venv/bin/landmark-detector project "$VOLUME" --out "$OUT" --overwrite
echo "Done: look at $OUT/silhouette.png and $OUT/depth.png; $OUT/projection.json maps pixels to RAS."
