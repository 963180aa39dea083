"""A tiny TorchScript "model" with an analytic answer, for testing the detection path without training.

Its one landmark is the silhouette centroid on the canvas, at the body's mean normalized depth (0), always in
view: for a sphere that is the sphere's centre in the image plane, 2/3 of the radius in front of the centre.
"""

from __future__ import annotations

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
