#!/usr/bin/env bash
# Mutation testing with mutmut (pinned in the "mutation" extra) of the core modules where a silent bug costs
# millimetres, against their fast tests. Usage:
#   bash scripts/mutation_test.sh [MODULE ...]     e.g. `bash scripts/mutation_test.sh geometry framing`
# (default: projection geometry framing pipeline markups fileio model thickness surface). Works in build/mutation/ (a copy laid out as
# mutmut expects: src/LandmarkDetectorLib, Testing/), prints each module's kill rate and writes the surviving mutants'
# diffs to build/mutation/survivors-<module>.txt. Testing/MUTANTS.md lists the survivors and why each one lives.
# Slow (some four hours for all seven on two busy cores; see Testing/MUTANTS.md): it runs under `nice -n 19` with one
# torch/BLAS thread.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$REPO/build/mutation
MODULES=("$@")
[ ${#MODULES[@]} -gt 0 ] || MODULES=(projection geometry framing pipeline markups fileio model thickness surface)
TESTS=(test_projection test_projection_properties test_projection_paths test_projection_thresholds test_projection_rest
       test_pipeline test_symmetry test_thresholds test_detection_report test_markups test_markups_properties
       test_fileio test_model_bundle test_detect test_geometry test_framing test_thickness test_surface)
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,mutation]"

rm -rf "$WORK"
mkdir -p "$WORK/src"
cp -r LandmarkDetector/LandmarkDetectorLib LandmarkDetector/Resources "$WORK/src/"  # bundled models beside the code
cp -r Testing scripts "$WORK/"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
only=$(printf '"src/LandmarkDetectorLib/%s.py", ' "${MODULES[@]}")
tests=$(for t in "${TESTS[@]}"; do if [ -f "Testing/Core/$t.py" ]; then printf '"Testing/Core/%s.py", ' "$t"; fi; done)
cat > "$WORK/pyproject.toml" <<EOF
[tool.pytest.ini_options]
addopts = "-p no:cacheprovider"
filterwarnings = ["ignore:\`torch.jit.*is deprecated:DeprecationWarning"]
markers = ["slow: slow", "gpu: needs a CUDA device"]

[tool.mutmut]
source_paths = ["src/LandmarkDetectorLib"]
also_copy = ["Testing", "scripts", "src/Resources"]
only_mutate = [${only%, }]
pytest_add_cli_args_test_selection = [${tests%, }]
pytest_add_cli_args = ["-m", "not slow and not gpu", "-q", "-p", "no:randomly",
                       "--deselect", "Testing/Core/test_detect.py::test_slicer_batch_script_runs_the_command_line"]
process_isolation = "forkserver"
mutate_only_covered_lines = true
EOF
cd "$WORK"
# The tests import LandmarkDetectorLib; mutmut puts mutants/src first on sys.path, ahead of the editable install.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
nice -n 19 "$REPO/.venv/bin/mutmut" run --max-children 2 || true
"$REPO/.venv/bin/python" - "${MODULES[@]}" <<'EOF'
import json, pathlib, subprocess, sys

statuses = {}
for line in subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True,
                           text=True).stdout.splitlines():
    name, _, status = line.strip().rpartition(": ")
    if name:
        statuses[name] = status
for module in sys.argv[1:]:
    mine = {n: s for n, s in statuses.items() if n.startswith(f"LandmarkDetectorLib.{module}.")}
    killed = sum(s in ("killed", "timeout") for s in mine.values())
    survivors = sorted(n for n, s in mine.items() if s not in ("killed", "timeout"))
    rate = f"{100 * killed / len(mine):.1f}%" if mine else "n/a"
    print(f"{module}: {len(mine)} mutants, {killed} killed ({rate}), {len(survivors)} not killed")
    with open(f"survivors-{module}.txt", "w") as f:
        for name in survivors:
            diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True)
            f.write(f"## {name}: {mine[name]}\n{diff.stdout}\n")
EOF
