"""Losses for both network families: landmark position, depth, in-view, and heatmap shape (with intermediate
supervision of the U-Net's coarser heatmaps)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .networks import HeatmapUNet, soft_argmax


@dataclass(frozen=True)
class LossWeights:
    """Relative weights of the loss terms (position is in canvas pixels)."""

    position: float = 1.0
    depth: float = 1.0
    in_view: float = 1.0
    heatmap: float = 0.5


@dataclass(frozen=True)
class Targets:
    """Batch targets as tensors: uv (B, N, 2), depth (B, N), and (B, N) bool in_view, known, located."""

    uv: Tensor
    depth: Tensor
    in_view: Tensor
    known: Tensor
    located: Tensor


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def gaussian_targets(uv: Tensor, shape: tuple[int, int], stride: int, sigma: float = 1.0) -> Tensor:
    """(B, N, h, w) normalized Gaussians centred on the canvas positions ``uv`` on a heatmap of the given stride."""
    h, w = shape
    centre = (uv + 0.5) / stride - 0.5  # heatmap coordinates
    xs = torch.arange(w, dtype=uv.dtype, device=uv.device)
    ys = torch.arange(h, dtype=uv.dtype, device=uv.device)
    gx = torch.exp(-0.5 * ((xs[None, None, :] - centre[..., 0:1]) / sigma) ** 2)  # (B, N, w)
    gy = torch.exp(-0.5 * ((ys[None, None, :] - centre[..., 1:2]) / sigma) ** 2)  # (B, N, h)
    g = gy[..., :, None] * gx[..., None, :]
    return g / g.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-12)


def landmark_loss(model: torch.nn.Module, inputs: Tensor, targets: Targets, canvas_hw: tuple[int, int],
                  weights: LossWeights = LossWeights()) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its parts for one batch.

    Position and depth count for every landmark with a known position on the canvas, also outside the scanned
    field (the network learns to extrapolate there, so that detection can tell "outside the scan" from the
    predicted position); the in-view term counts for every annotated landmark.
    """
    height, width = canvas_hw
    on_canvas = ((targets.uv[..., 0] >= -0.5) & (targets.uv[..., 0] <= width - 0.5) &
                 (targets.uv[..., 1] >= -0.5) & (targets.uv[..., 1] <= height - 0.5))
    located = (targets.located & on_canvas).float()
    heatmap_term = torch.zeros((), device=inputs.device)
    if isinstance(model, HeatmapUNet):
        heatmaps, depth_map, logit = model.forward_all(inputs)
        uv, depth = soft_argmax(heatmaps[-1], depth_map, model.stride)
        for heatmap in heatmaps:
            stride = height // heatmap.shape[-2]
            target = gaussian_targets(targets.uv, heatmap.shape[-2:], stride)
            log_p = F.log_softmax(heatmap.flatten(2), dim=-1).view_as(heatmap)
            heatmap_term = heatmap_term + _masked_mean(-(target * log_p).sum(dim=(-2, -1)), located)
        heatmap_term = heatmap_term / len(heatmaps)
    else:
        uv, depth, logit = model(inputs)
    position = _masked_mean((uv - targets.uv).abs().sum(dim=-1), located)
    depth_term = _masked_mean((depth - targets.depth).abs(), located)
    in_view = _masked_mean(F.binary_cross_entropy_with_logits(logit, targets.in_view.float(), reduction="none"),
                           targets.known.float())
    total = (weights.position * position + weights.depth * depth_term + weights.in_view * in_view
             + weights.heatmap * heatmap_term)
    parts = {"position_px": position.item(), "depth": depth_term.item(), "in_view": in_view.item(),
             "heatmap": heatmap_term.item()}
    return total, parts
