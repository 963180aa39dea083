"""A tiny TorchScript "model" with an analytic answer, for testing the detection path without training.

Its one landmark is the silhouette centroid on the canvas, at the body's mean normalized depth (0), always in
view: for a sphere that is the sphere's centre in the image plane, 2/3 of the radius in front of the centre.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from LandmarkDetectorLib.framing import CanvasSpec
from LandmarkDetectorLib.model import ModelMetadata, save_model
from LandmarkDetectorLib.projection import ProjectionConfig


class CentroidModel(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        silhouette = x[:, 0]
        total = silhouette.sum(dim=(1, 2)).clamp(min=1.0)
        us = torch.arange(silhouette.shape[2], dtype=x.dtype)
        vs = torch.arange(silhouette.shape[1], dtype=x.dtype)
        u = (silhouette.sum(dim=1) * us).sum(dim=-1) / total
        v = (silhouette.sum(dim=2) * vs).sum(dim=-1) / total
        depth = (x[:, 1] * silhouette).sum(dim=(1, 2)) / total
        return torch.stack([u, v], dim=-1)[:, None, :], depth[:, None], torch.full_like(depth[:, None], 10.0)


SPEC = CanvasSpec(height=96, width=96, pixel_spacing_mm=1.5)
PROJECTION = ProjectionConfig(table_removal_mm=0.0)


def save_centroid_model(path, spec: CanvasSpec = SPEC, projection: ProjectionConfig = PROJECTION) -> None:
    metadata = ModelMetadata(name="centroid", landmarks=("Centroid",), canvas=spec, projection=projection,
                             architecture="analytic", description="silhouette centroid (tests)")
    save_model(CentroidModel(), metadata, path)


class ConfidenceModel(nn.Module):
    """Every landmark at the silhouette centroid (as CentroidModel), each with its own fixed in-view logit."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.centroid = CentroidModel()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        uv, depth, _ = self.centroid(x)
        n = self.logits.shape[0]
        return uv.expand(-1, n, -1), depth.expand(-1, n), self.logits.expand(x.shape[0], n)


CONFIDENCE_LOGITS = {"Above": 3.0, "AtThreshold": 1.5, "JustBelow": 1.49, "Between": 0.5, "Below": -1.0}
"""Landmark -> logit of ``save_confidence_model``: probabilities 0.953, 0.818, 0.816, 0.622 and 0.269."""


class SideGuessModel(nn.Module):
    """A left-right pair ("PointR", "PointL") both placed 10 pixels right of the silhouette centroid: on the mirrored
    canvas they land 10 pixels left of it, so the two passes disagree by 20 pixels (30 mm on SPEC)."""

    def __init__(self):
        super().__init__()
        self.centroid = CentroidModel()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        uv, depth, logits = self.centroid(x)
        guess = uv + torch.tensor([10.0, 0.0], dtype=x.dtype)
        return guess.expand(-1, 2, -1), depth.expand(-1, 2), logits.expand(-1, 2)


def save_side_guess_model(path, tolerance_mm: float = 5.0) -> None:
    metadata = ModelMetadata(name="sideguess", landmarks=("PointR", "PointL"), canvas=SPEC, projection=PROJECTION,
                             mirror_tolerance_mm=tolerance_mm, architecture="analytic",
                             description="a pair that disagrees with its mirror by 30 mm (tests)")
    save_model(SideGuessModel(), metadata, path)


def save_confidence_model(path, spec: CanvasSpec = SPEC, projection: ProjectionConfig = PROJECTION) -> float:
    """Save a ConfidenceModel whose calibrated threshold is exactly the probability the network gives "AtThreshold"
    (0.818, so that "Between" is found by a fixed 0.5 but not by the model's threshold); returns that threshold.

    The threshold is read back from the loaded network: torch's vectorized and scalar sigmoids may differ in the last
    bit, so it is not computed apart.
    """
    from LandmarkDetectorLib.model import load_model

    metadata = ModelMetadata(name="confident", landmarks=tuple(CONFIDENCE_LOGITS), canvas=spec,
                             projection=projection, architecture="analytic", description="fixed confidences (tests)")
    module = ConfidenceModel(list(CONFIDENCE_LOGITS.values()))
    save_model(module, metadata, path)
    blank = torch.zeros((1, 3, spec.height, spec.width)).numpy()
    threshold = float(load_model(path, "cpu").predict(blank)[2][0, list(CONFIDENCE_LOGITS).index("AtThreshold")])
    save_model(module, dataclasses.replace(metadata, confidence_threshold=threshold), path, overwrite=True)
    return threshold


class LimbModel(nn.Module):
    """Two limbs' roots and tips beside the silhouette's centroid: "RootR" and "TipR" 20 pixels to one side of it,
    "RootL" and "TipL" 20 to the other; the roots 30 pixels above it (superior in an AP view), the tips 10 below; all
    at the body's mean depth and in view. The estimates on the mirrored canvas are the same points."""

    def __init__(self):
        super().__init__()
        self.centroid = CentroidModel()
        self.register_buffer("offsets", torch.tensor([[-20.0, -30.0], [20.0, -30.0], [-20.0, 10.0], [20.0, 10.0]]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        uv, depth, logits = self.centroid(x)
        return uv + self.offsets, depth.expand(-1, 4), logits.expand(-1, 4)


def save_limb_model(path) -> None:
    """A LimbModel whose tips are limb tips of their roots (``ModelMetadata.limb_tips``), with a 5 mm mirror
    tolerance."""
    metadata = ModelMetadata(name="limbs", landmarks=("RootR", "RootL", "TipR", "TipL"), canvas=SPEC,
                             projection=PROJECTION, mirror_tolerance_mm=5.0,
                             limb_tips={"TipR": "RootR", "TipL": "RootL"}, architecture="analytic",
                             description="two limbs' roots and tips (tests)")
    save_model(LimbModel(), metadata, path)
