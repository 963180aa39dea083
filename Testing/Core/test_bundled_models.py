"""The bundled models: present, small, checksummed, documented, and as accurate as their model cards say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from LandmarkDetectorLib.model import BUNDLED_DIR, load_model
from LandmarkDetectorLib.pipeline import detect_landmarks
from LandmarkDetectorLib.synthetic.anatomy import BODY_LANDMARKS, HAND_LANDMARKS
from LandmarkDetectorLib.synthetic.dataset import synthesize_case

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"hand-mr": ("hand", HAND_LANDMARKS), "wholebody-ct": ("body", BODY_LANDMARKS)}
BUNDLED = sorted(p.stem for p in BUNDLED_DIR.glob("*.pt"))


def test_bundled_models_exist():
    assert "hand-mr" in BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_is_valid_small_and_has_a_card(name):
    model = load_model(name)  # checks the SHA-256 and the outputs
    assert name in EXPECTED
    assert model.metadata.landmarks == EXPECTED[name][1]
    assert (BUNDLED_DIR / f"{name}.pt").stat().st_size < 10e6
    card = (REPO / "LandmarkDetector" / "Resources" / "ModelCards" / f"{name}.md").read_text()
    assert "Measured accuracy" in card and model.metadata.architecture in card


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_detects_as_its_card_says(name):
    """A few held-out synthetic volumes (a seed the card's evaluation did not use) through the whole path."""
    model = load_model(name)
    anatomy = EXPECTED[name][0]
    errors = []
    for index in range(4):
        scan = synthesize_case(anatomy, 777_001, index)
        result = detect_landmarks(scan.voxels_kji, scan.ijk_to_ras, model)
        assert result.names == scan.landmark_names
        both = scan.in_view & result.in_view
        errors += np.linalg.norm(result.points_ras - scan.landmarks_ras, axis=1)[both].tolist()
    card = model.metadata.metrics["evaluation"][model.metadata.architecture]["model"]["all"]
    assert np.mean(errors) < 3 * card["mean_mm"] + 2.0
