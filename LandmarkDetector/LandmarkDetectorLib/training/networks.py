"""The two network families. Both map a (B, 3, H, W) canvas to (uv, depth, logit) per landmark (see model.py).

- ``RegressionCNN``: Riegler et al.'s network: conv + max-pool layers, fully connected layers with dropout,
  coordinates regressed in [-1, 1].
- ``HeatmapUNet``: a fully convolutional U-Net regressing one heatmap per landmark (Payer et al.) with
  intermediate supervision at coarser decoder levels (Newell et al.); sub-pixel positions by soft-argmax and
  depth by integrating a per-landmark depth map under the same soft-argmax weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(True))


class RegressionCNN(nn.Module):
    """The paper's regression network, with a depth and an in-view output added per landmark."""

    def __init__(self, n_landmarks: int, height: int, width: int, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.n_landmarks = n_landmarks
        self.height = height
        self.width = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(64, 96, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(96, 128, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2))
        flat = 128 * (height // 16) * (width // 16)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 512), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(dropout), nn.Linear(512, n_landmarks * 4))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.head(self.features(x)).view(-1, self.n_landmarks, 4)
        # Coordinates in [-1, 1] span the canvas from the first to the last pixel centre.
        u = (out[..., 0] + 1.0) * 0.5 * (self.width - 1)
        v = (out[..., 1] + 1.0) * 0.5 * (self.height - 1)
        return torch.stack([u, v], dim=-1), out[..., 2], out[..., 3]


class HeatmapUNet(nn.Module):
    """U-Net with per-landmark heatmap and depth-map heads, intermediate heatmap heads and an in-view head.

    A stride-2 stem halves the canvas first (the heatmaps have stride 2; soft-argmax makes positions sub-pixel),
    then each of ``levels`` (channel counts) halves the resolution again.
    """

    def __init__(self, n_landmarks: int, in_channels: int = 3, levels: tuple[int, ...] = (24, 32, 48, 64, 96)):
        super().__init__()
        self.n_landmarks = n_landmarks
        self.stride = 2
        self.stem = nn.Sequential(nn.Conv2d(in_channels, levels[0], 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(levels[0]), nn.ReLU(True))
        self.encoders = nn.ModuleList()
        previous = levels[0]
        for channels in levels:
            self.encoders.append(conv_block(previous, channels))
            previous = channels
        self.decoders = nn.ModuleList()
        self.side_heads = nn.ModuleList()  # intermediate supervision: heatmaps from coarser decoder levels
        for level in range(len(levels) - 2, -1, -1):
            self.decoders.append(conv_block(previous + levels[level], levels[level]))
            previous = levels[level]
            if level > 0:
                self.side_heads.append(nn.Conv2d(previous, n_landmarks, 1))
        self.heatmap_head = nn.Conv2d(previous, n_landmarks, 1)
        self.depth_head = nn.Conv2d(previous, n_landmarks, 1)
        self.in_view_head = nn.Linear(2 * levels[-1] + n_landmarks, n_landmarks)

    def forward_all(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """Heatmap logits per decoder scale (coarse to fine), depth maps and in-view logits."""
        x = self.stem(x)
        skips: list[Tensor] = []
        for index, encoder in enumerate(self.encoders):
            if index > 0:
                x = F.max_pool2d(x, 2)
            x = encoder(x)
            skips.append(x)
        bottleneck = x
        decoded: list[Tensor] = []
        for index, decoder in enumerate(self.decoders):
            skip = skips[len(skips) - 2 - index]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
            decoded.append(x)
        heatmaps: list[Tensor] = []
        for index, side in enumerate(self.side_heads):
            heatmaps.append(side(decoded[index]))
        final = self.heatmap_head(x)
        heatmaps.append(final)
        pooled = torch.cat([bottleneck.mean(dim=(2, 3)), bottleneck.amax(dim=(2, 3)), final.amax(dim=(2, 3))], 1)
        return heatmaps, self.depth_head(x), self.in_view_head(pooled)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        heatmaps, depth_map, logit = self.forward_all(x)
        uv, depth = soft_argmax(heatmaps[-1], depth_map, self.stride)
        return uv, depth, logit


def soft_argmax(heatmap_logits: Tensor, depth_map: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Expected canvas position (B, N, 2) and depth (B, N) under each heatmap's softmax.

    A heatmap pixel x covers canvas pixels [x * stride, (x + 1) * stride), centred at (x + 0.5) * stride - 0.5.
    """
    b, n, h, w = heatmap_logits.shape
    p = torch.softmax(heatmap_logits.reshape(b, n, h * w), dim=-1).reshape(b, n, h, w)
    xs = (torch.arange(w, dtype=p.dtype, device=p.device) + 0.5) * stride - 0.5
    ys = (torch.arange(h, dtype=p.dtype, device=p.device) + 0.5) * stride - 0.5
    u = (p.sum(dim=2) * xs).sum(dim=-1)
    v = (p.sum(dim=3) * ys).sum(dim=-1)
    depth = (p * depth_map).sum(dim=(2, 3))
    return torch.stack([u, v], dim=-1), depth
