"""The Slicer extension ships every runtime file (each one is listed in LandmarkDetector/CMakeLists.txt), and its
Extensions Index catalog entry (LandmarkDetector.json) is valid and agrees with the top-level CMakeLists.txt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "LandmarkDetector"
PIP_ONLY = ("LandmarkDetectorLib/training/experiment.py",)  # needs scikit-learn; used by scripts/ only


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


CATALOG_SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json"
# The constraints of Slicer's catalog entry schema v1.0.1 (draft-07; Slicer/Slicer, Schemas/), as the Extensions
# Index checks each entry: three required keys, no others than these, their types and allowed values.
CATALOG_CONSTRAINTS = {
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "enum": [1, 3, 5]},
    },
}


def extension_setting(name: str) -> str:
    match = re.search(rf'set\({name} "([^"]*)"\)', (REPO / "CMakeLists.txt").read_text())
    assert match, f"{name} not set in CMakeLists.txt"
    return match.group(1)


def test_catalog_entry_is_valid_and_agrees_with_cmake():
    project = re.search(r"project\((\w+)\)", (REPO / "CMakeLists.txt").read_text()).group(1)
    entry = json.loads((REPO / f"{project}.json").read_text())  # the Index names each entry after the extension
    jsonschema.Draft7Validator(CATALOG_CONSTRAINTS).validate(entry)
    assert entry["$schema"].rstrip("#") == CATALOG_SCHEMA_URL
    assert entry["category"] == extension_setting("EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == extension_setting("EXTENSION_DEPENDS").split()
    assert entry.get("build_subdirectory", ".") == "."
    # Until the repository is published the entry builds this checkout: a local source folder that exists.
    assert entry["scm_type"] == "local" and (REPO / entry["scm_url"] / "CMakeLists.txt").is_file()


def test_catalog_constraints_reject_what_the_index_rejects():
    entry = json.loads((REPO / "LandmarkDetector.json").read_text())
    validator = jsonschema.Draft7Validator(CATALOG_CONSTRAINTS)
    for bad in ({k: v for k, v in entry.items() if k != "scm_url"}, {**entry, "description": "in CMake only"},
                {**entry, "tier": 2}, {**entry, "build_dependencies": "PyTorch"}):
        assert not validator.is_valid(bad), bad


UNPUBLISHED = "github.com/LandmarkDetector"  # the repository these files once named, which does not exist


def test_no_link_to_a_repository_that_does_not_exist():
    """Links go to files that ship (the model cards) or are left out until the repository is published."""
    files = [REPO / "CMakeLists.txt", REPO / "LandmarkDetector.json", REPO / "pyproject.toml", REPO / "README.md",
             *MODULE.rglob("*.py"), *MODULE.rglob("*.md"), *(REPO / "scripts").glob("*.py")]
    assert [f.name for f in files if UNPUBLISHED in f.read_text(encoding="utf-8")] == []
    assert "[project.urls]" not in (REPO / "pyproject.toml").read_text()
    top = (REPO / "CMakeLists.txt").read_text()
    assert not re.search(r"set\(EXTENSION_(HOMEPAGE|ICONURL|SCREENSHOTURLS)\b", top)


def test_model_cards_ship_with_the_module():
    listed = cmake_list("MODULE_PYTHON_RESOURCES")
    for model in (MODULE / "Resources" / "Models").glob("*.pt"):
        assert f"Resources/ModelCards/{model.stem}.md" in listed, model.stem


def test_readme_shows_how_to_get_the_cpu_build_of_the_pinned_torch():
    pinned = re.search(r'torch = \["torch==([\d.]+)"\]', (REPO / "pyproject.toml").read_text())[1]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"pip install torch=={pinned} --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "CUDA build" in readme
