"""The Slicer extension ships every runtime file: each one is listed in LandmarkDetector/CMakeLists.txt."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "LandmarkDetector"
PIP_ONLY = ("LandmarkDetectorLib/synthetic/", "LandmarkDetectorLib/training/")


def cmake_list(name: str) -> set[str]:
    text = (MODULE / "CMakeLists.txt").read_text()
    block = re.search(rf"set\({name}\s+(.*?)\)", text, re.S)
    assert block, f"{name} not found in LandmarkDetector/CMakeLists.txt"
    return {entry.replace("${MODULE_NAME}", "LandmarkDetector") for entry in block.group(1).split()}


def runtime_files(pattern: str) -> set[str]:
    files = {p.relative_to(MODULE).as_posix() for p in MODULE.rglob(pattern)
             if "__pycache__" not in p.parts and not any(part.endswith(".egg-info") for part in p.parts)}
    return {f for f in files if not f.startswith(PIP_ONLY)}


def test_every_runtime_script_is_listed():
    listed = cmake_list("MODULE_PYTHON_SCRIPTS")
    assert runtime_files("*.py") - listed == set(), "add these scripts to MODULE_PYTHON_SCRIPTS"
    assert {f for f in listed if not (MODULE / f).is_file()} == set(), "listed scripts that do not exist"


def test_every_resource_is_listed():
    listed = cmake_list("MODULE_PYTHON_RESOURCES")
    resources = {f for f in runtime_files("*") if (MODULE / f).is_file() and not f.endswith((".py", ".txt", ".pyc"))}
    assert resources - listed == set(), "add these files to MODULE_PYTHON_RESOURCES"
    assert {f for f in listed if not (MODULE / f).is_file()} == set(), "listed resources that do not exist"


def test_top_level_layout():
    for name in ["CMakeLists.txt", "README.md", "LandmarkDetector.png", "pyproject.toml", "LandmarkDetector",
                 "Resources", "Testing"]:
        assert (REPO / name).exists(), name
    top = (REPO / "CMakeLists.txt").read_text()
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in top and "add_subdirectory(LandmarkDetector)" in top
