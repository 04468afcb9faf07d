"""Transport: back-trajectories through the hourly wind carry a learned source field to each cell.

Sits in ``models/`` between the cross-modal attention and the decoder. The NO2 column at the
overpass is, to first order, the sum over the past hours of what was emitted upwind and has not
yet decayed: C(x) = sum_t w(x, t) S(x_t), where x_t is where the air arriving at x at the overpass
was at hour t. Here:

- ``back_trajectories`` integrates the 10 m wind (target cells per hour, on the met block of the
  sample) backwards hour by hour from every cell, sampling the wind at the current position
  (bilinear, the block's edge values beyond it). It is geometry, not learned, and runs without
  gradients.
- ``Transport`` predicts a non-negative source field S (one channel per attention head) from the
  full-resolution CNN features, samples it along the trajectories, and sums it over hours with
  the weights of the cross-modal attention (the token's attention over its 24 hourly
  meteorology tokens, shared by the token's cells), times a learned non-negative gain per
  token (bilinear between token centres). So the
  attention over hours is the model's age spectrum of the air: how much each hour's upwind
  emission still counts at the overpass.

Positions are in index units: rows/cols of the tile (0..H-1, 0..W-1), met-block indices through
the sample's affine ``i = a_i + b_i * row``, ``j = a_j + b_j * col``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sample_at(field: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Bilinear samples of ``field`` (B, C, h, w) at index positions ``rows``/``cols`` (B, ...)
    -> (B, C, ...); positions outside the field take its edge values."""
    batch, channels, h, w = field.shape
    shape = rows.shape[1:]
    x = 2.0 * cols.reshape(batch, 1, -1) / max(w - 1, 1) - 1.0  # (B, 1, P)
    y = 2.0 * rows.reshape(batch, 1, -1) / max(h - 1, 1) - 1.0
    grid = torch.stack([x, y], dim=-1).to(field.dtype)  # (B, 1, P, 2)
    out = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(batch, channels, *shape)  # (B, C, 1, P) -> (B, C, ...)


@torch.no_grad()
def back_trajectories(
    wind: Tensor, affine: Tensor, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """Where the air reaching each cell at the overpass was at every hour.

    Args:
        wind: (B, T, 2, mh, mw) displacement per hour in target cells (rows, cols) on the met
            block; hour index T-1 is the overpass step.
        affine: (B, 4) met-block index = a + b * tile index, (a_i, b_i, a_j, b_j).
        height, width: the tile, H x W cells.

    Returns ``rows``, ``cols`` (B, T, H, W) float32 tile index positions; index T-1 is the cell
    itself, index t the position (T-1-t) hours earlier (Euler steps of one hour, wind sampled
    at the current position).
    """
    wind = wind.float()
    batch, steps = wind.shape[:2]
    a_i, b_i, a_j, b_j = (affine[:, k, None, None].float() for k in range(4))
    row = torch.arange(height, dtype=torch.float32, device=wind.device)
    col = torch.arange(width, dtype=torch.float32, device=wind.device)
    r = row[None, :, None].expand(batch, height, width)
    c = col[None, None, :].expand(batch, height, width)
    rows, cols = [r], [c]
    for back in range(1, steps):
        hour = steps - back  # the wind of this hour moved the air to where it is an hour later
        moved = sample_at(wind[:, hour], a_i + b_i * r, a_j + b_j * c)  # (B, 2, H, W)
        r, c = r - moved[:, 0], c - moved[:, 1]
        rows.append(r)
        cols.append(c)
    return torch.stack(rows[::-1], dim=1), torch.stack(cols[::-1], dim=1)  # (B, T, H, W)


class Transport(nn.Module):
    """(CNN features (B, C, H, W), trajectories, hour weights, gain) -> (B, heads, H, W)."""

    def __init__(self, feature_channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.source = nn.Conv2d(feature_channels, heads, 1)

    def forward(
        self,
        features: Tensor,
        rows: Tensor,
        cols: Tensor,
        weights: Tensor,
        gain: Tensor,
    ) -> Tensor:
        """features (B, C, H, W); rows/cols (B, T, H, W); weights (B, heads, T, h, w) over hours
        on the token grid (h = H / s), summing to 1 over T; gain (B, heads, h, w) >= 0 ->
        transported sources (B, heads, H, W)."""
        height, width = features.shape[-2:]
        batch, heads, steps, h, w = weights.shape
        source = F.softplus(self.source(features).float())  # (B, heads, H, W) >= 0
        upwind = sample_at(source, rows, cols)  # (B, heads, T, H, W)
        # each cell takes its token's weights over hours (the token's s x s cells share them):
        # (B, heads, T, h, w) -> (B, heads, T, H, W), then a sum
        # over T of same-layout tensors (3x faster on a CPU than an einsum over the blocked
        # view, which permutes the (B, heads, T, H, W) samples first)
        cell_weights = weights.float().repeat_interleave(height // h, dim=3)  # rows
        cell_weights = cell_weights.repeat_interleave(width // w, dim=4)  # (B, heads, T, H, W)
        summed = (upwind * cell_weights).sum(dim=2)  # (B, heads, H, W)
        cell_gain = F.interpolate(
            gain.float(), size=(height, width), mode="bilinear", align_corners=False
        )
        return summed * cell_gain  # (B, heads, H, W)
