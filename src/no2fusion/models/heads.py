"""Prediction head: fused tokens -> one normalized NO2 value per grid cell.

Sits in ``models/`` after the cross-modal attention. With token stride 1 it is the seed's MLP
D -> 128 -> 1 per token. With stride ``s > 1`` the MLP's hidden layer (D -> 128) feeds a light
decoder: a linear to ``s*s*c`` values per token, PixelShuffle back to full resolution (c
channels), concatenation with the full-resolution CNN skip, a 3x3 conv, GELU and a 1x1 conv.
Output is in normalized NO2 space; the training layer inverts the normalization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PredictionHead(nn.Module):
    """tokens (B, N, D) on an (H/s, W/s) grid [+ skip (B, C_skip, H, W)] -> (B, H, W)."""

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int = 128,
        token_stride: int = 1,
        skip_channels: int = 0,
        decoder_channels: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.token_stride = token_stride
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.drop = nn.Dropout(dropout)
        s = token_stride
        self.fc2 = nn.Linear(hidden_dim, 1 if s == 1 else s * s * decoder_channels)
        self.shuffle: nn.PixelShuffle | None = None
        if s > 1:
            self.shuffle = nn.PixelShuffle(s)  # (B, s*s*c, h, w) -> (B, c, H, W)
            self.fuse = nn.Conv2d(decoder_channels + skip_channels, decoder_channels, 3, padding=1)
            self.out = nn.Conv2d(decoder_channels, 1, 1)

    def forward(self, tokens: Tensor, grid_hw: tuple[int, int], skip: Tensor | None) -> Tensor:
        """tokens (B, N, D), N = h*w, ``grid_hw`` = (h, w); skip (B, C, H, W) -> (B, H, W)."""
        batch = tokens.shape[0]
        h, w = grid_hw
        values = self.fc2(self.drop(F.gelu(self.fc1(tokens))))  # (B, N, 1) or (B, N, s*s*c)
        if self.shuffle is None:
            return values.view(batch, h, w)  # (B, N, 1) -> (B, H, W)
        if skip is None:
            raise ValueError("a strided head needs the full-resolution skip features")
        # (B, N, s*s*c) -> (B, h, w, s*s*c) -> (B, s*s*c, h, w) -> PixelShuffle (B, c, H, W)
        patches = values.view(batch, h, w, -1).permute(0, 3, 1, 2)
        upsampled = self.shuffle(patches)
        fused = F.gelu(self.fuse(torch.cat([upsampled, skip.to(upsampled.dtype)], dim=1)))
        # Channel 0 of the shuffled tokens is a direct per-cell prediction (the stride-1 head's
        # linear path); the conv on [tokens, skip] adds a full-resolution correction.
        return upsampled[:, 0] + self.out(fused)[:, 0]  # (B, H, W)
