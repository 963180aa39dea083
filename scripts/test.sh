#!/usr/bin/env bash
# Sets up .venv with everything the tests need (Python >= 3.10 and pip are enough), then runs the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k projection`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
exec .venv/bin/python -m pytest "$@"
