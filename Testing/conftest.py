"""Fixtures shared by all test folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from analytic_model import save_centroid_model

from LandmarkDetectorLib.model import load_model

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder, ``<repo>/../shared`` (CI clones the repository with shared/ beside it)."""
    folder = REPO_ROOT.parent / "shared"
    if not folder.is_dir():
        pytest.skip(f"shared data folder {folder} not found; put the 'shared' folder next to the repository.")
    return folder


@pytest.fixture(scope="module")
def centroid_model(tmp_path_factory):
    """The analytic silhouette-centroid model (``analytic_model.py``), saved and loaded as a bundle."""
    path = tmp_path_factory.mktemp("model") / "centroid.pt"
    save_centroid_model(path)
    return load_model(path)
