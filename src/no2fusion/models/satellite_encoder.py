"""Satellite encoder: multi-scale residual CNN that turns the satellite input into tokens.

Sits in ``models/`` (after ``data/``, before ``training/``). Input is the normalized NO2 field
with NaN already replaced by 0, its validity mask and optional static channels, (B, C, H, W).
Stage 1 (two blocks) runs at full resolution (its output is the decoder's skip); with a token stride
``s > 1`` an ``s x s`` patch convolution then downsamples, and stages 2-4 run on the token grid
(full-resolution convolutions with few channels are the least efficient work on a CPU).
Every stage is a ``MultiScaleBlock``: parallel 3x3 / 5x5 / 7x7 convolutions (~10/30/70 km at
0.1 deg) concatenated, BatchNorm, GELU, plus a residual (identity or 1x1 projection).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _branch_channels(out_channels: int) -> tuple[int, int, int]:
    """Split ``out_channels`` over the 3x3 / 5x5 / 7x7 branches as 1/2, 1/4, 1/4.

    The wide kernels get fewer channels: the block then costs 23 MAC per input channel and
    output channel per pixel instead of 28 for an even split.
    """
    if out_channels < 4:
        raise ValueError(
            f"a multi-scale block needs at least 4 output channels, got {out_channels}"
        )
    quarter = out_channels // 4
    return out_channels - 2 * quarter, quarter, quarter


class MultiScaleBlock(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H, W): parallel 3/5/7 convs + residual."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, width, kernel, padding=kernel // 2, bias=False)
            for width, kernel in zip(_branch_channels(out_channels), (3, 5, 7), strict=True)
        )
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.GELU()
        self.residual: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        multi = torch.cat([branch(x) for branch in self.branches], dim=1)  # (B, C_out, H, W)
        return self.act(self.norm(multi)) + self.residual(x)


class SatelliteEncoder(nn.Module):
    """Multi-scale CNN: (B, C, H, W) -> tokens (B, H/s * W/s, D) and a full-res skip.

    ``channels`` are the four stage widths (seed: 32, 64, 128, 256); a final 1x1 projection maps
    the last stage to ``embed_dim`` when they differ. ``token_stride`` ``s`` must divide H and W.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        token_stride: int = 4,
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"cnn_channels needs at least 2 stages, got {channels}")
        if token_stride < 1:
            raise ValueError(f"token_stride must be >= 1, got {token_stride}")
        self.token_stride = token_stride
        self.skip_channels = channels[0]
        # two full-resolution blocks: the decoder's skip sees 13 x 13 cells (sources, gaps)
        self.full_res = nn.Sequential(
            MultiScaleBlock(in_channels, channels[0]), MultiScaleBlock(channels[0], channels[0])
        )
        self.patchify: nn.Module = (
            nn.Identity()
            if token_stride == 1
            else nn.Conv2d(channels[0], channels[0], token_stride, stride=token_stride)
        )
        self.token_res = nn.Sequential(
            *(MultiScaleBlock(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True))
        )
        self.project: nn.Module = (
            nn.Identity() if channels[-1] == embed_dim else nn.Conv2d(channels[-1], embed_dim, 1)
        )

    def forward(self, sat: Tensor) -> tuple[Tensor, Tensor]:
        """sat (B, C, H, W) -> (tokens (B, N, D) with N = H/s * W/s, skip (B, C_skip, H, W))."""
        height, width = sat.shape[-2:]
        s = self.token_stride
        if height % s or width % s:
            raise ValueError(
                f"satellite input {height} x {width} is not divisible by token_stride {s}"
            )
        skip = self.full_res(sat)  # (B, C0, H, W)
        grid = self.project(self.token_res(self.patchify(skip)))  # (B, D, H/s, W/s)
        batch, dim = grid.shape[:2]
        # (B, D, h, w) -> (B, h, w, D) -> (B, N, D); a free view when channels_last.
        tokens = grid.permute(0, 2, 3, 1).reshape(batch, -1, dim)
        return tokens, skip
