"""The pure core stays pure: no slicer/qt/ctk/vtk imports, no print outside the command line, no global RNG."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "LandmarkDetector" / "LandmarkDetectorLib"
CORE_FILES = sorted(CORE.rglob("*.py"))
FORBIDDEN_MODULES = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "PythonQt", "mrml"}


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_files_found():
    assert len(CORE_FILES) >= 8


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_never_imports_slicer_qt_or_vtk(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert not imported_modules(tree) & FORBIDDEN_MODULES


@pytest.mark.parametrize("path", [p for p in CORE_FILES if p.name != "cli.py"], ids=lambda p: str(p.relative_to(CORE)))
def test_library_code_does_not_print_or_use_the_global_rng(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "print", f"{path.name}:{node.lineno} prints; log instead"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "random" and isinstance(node.value.value, ast.Name) and node.value.value.id == "np":
                assert node.attr in {"Generator", "default_rng", "SeedSequence", "PCG64"}, (
                    f"{path.name}:{node.lineno} uses np.random.{node.attr}; pass an np.random.Generator instead")
