#!/usr/bin/env bash
# Sets up .venv (Python >= 3.10 and pip are enough) and detects landmarks with a bundled model:
#   bash scripts/demo.sh                 # a synthetic whole-body CT that the project generates (ground truth beside it)
#   bash scripts/demo.sh VOLUME [OUT]    # your NRRD / NIfTI / MetaImage file or DICOM series folder
# Results go to OUT (default out/demo): landmarks.mrk.json (open it in Slicer) and landmarks.png (a preview).
# MODEL=hand-mr bash scripts/demo.sh ... uses the hand model (a synthetic hand MR when no VOLUME is given).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MODEL=${MODEL:-wholebody-ct}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[torch,cli]"
OUT=${2:-out/demo}
OVERWRITE=()
[ $# -ge 2 ] || OVERWRITE=(--overwrite)  # out/demo is ours to replace; a folder you name is never overwritten
if [ $# -ge 1 ]; then
  VOLUME=$1
else
  ANATOMY=body
  [ "$MODEL" = hand-mr ] && ANATOMY=hand
  .venv/bin/landmark-detector synth --anatomy "$ANATOMY" --count 1 --seed 2026 --out "$OUT/synthetic" --overwrite
  VOLUME="$OUT/synthetic/${ANATOMY}_s2026_0000.nii.gz"
  echo "Ground truth: $OUT/synthetic/${ANATOMY}_s2026_0000.mrk.json"
fi
mkdir -p "$OUT"
.venv/bin/landmark-detector detect "$VOLUME" --model "$MODEL" --out "$OUT/landmarks.mrk.json" \
  --preview "$OUT/landmarks.png" "${OVERWRITE[@]}"
echo "Done: open $OUT/landmarks.mrk.json in Slicer with the volume; $OUT/landmarks.png shows the points."
