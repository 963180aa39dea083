#!/usr/bin/env bash
# Sets up .venv with everything the tests need (Python >= 3.10 and pip are enough), then runs the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k projection`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
# The anny body model (synthetic bodies and hands) builds its cache on first use: about 80 s and 0.8 GB, once, under
# ANNY_CACHE_DIR (default ~/.cache/anny). Build it here, saying so, rather than inside the first test that needs it.
.venv/bin/python -c "import logging; logging.basicConfig(level=logging.INFO, format='%(message)s')
from LandmarkDetectorLib.synthetic.anny_body import anny_model; anny_model()"
exec .venv/bin/python -m pytest "$@"
