"""Prediction head: fused tokens -> one normalized NO2 value per grid cell, at full resolution.

Sits in ``models/`` after the cross-modal attention (and the transport). The token MLP
(D -> hidden -> s*s*c) gives every token ``s x s`` cells of ``c`` decoder channels, which
PixelShuffle puts back on the full grid (s = token stride; s = 1 is the seed's per-token MLP).
A decoder then sees, per cell, those channels, the full-resolution skip features of the
satellite CNN (sharp edges of sources and gaps) and any extra full-resolution channels (the
transported sources, which draw the wind-shaped plumes): 3x3 conv, GELU, 3x3 conv, GELU, 1x1
conv, added to channel 0 of the token values (a direct per-cell prediction, the short path).
With ``outputs = 2`` the 1x1 conv and the token values give a second map the same way (the
model's log-gain of its residual base, ``fusion``). Output is in normalized NO2 space; the
training layer inverts the normalization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PredictionHead(nn.Module):
    """tokens (B, N, D) on an (H/s, W/s) grid + skip (B, C_skip, H, W) [+ extra (B, C_extra, H,
    W)] -> (B, H, W), or (B, outputs, H, W) with ``outputs`` > 1."""

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int = 128,
        token_stride: int = 1,
        skip_channels: int = 0,
        extra_channels: int = 0,
        decoder_channels: int = 32,
        token_channels: int = 16,
        dropout: float = 0.0,
        outputs: int = 1,
    ) -> None:
        super().__init__()
        if not 1 <= outputs <= token_channels:
            raise ValueError(f"outputs {outputs} is not in 1..token_channels ({token_channels})")
        self.outputs = outputs
        self.token_stride = token_stride
        self.extra_channels = extra_channels
        s = token_stride
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, s * s * token_channels)
        self.shuffle = nn.PixelShuffle(s)  # (B, s*s*c, h, w) -> (B, c, H, W)
        inputs = token_channels + skip_channels + extra_channels
        self.decoder = nn.Sequential(
            nn.Conv2d(inputs, decoder_channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(decoder_channels, decoder_channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(decoder_channels, outputs, 1),
        )

    def forward(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        skip: Tensor | None,
        extra: Tensor | None = None,
    ) -> Tensor:
        """tokens (B, N, D), N = h*w, ``grid_hw`` = (h, w); skip (B, C, H, W); extra (B, E, H, W)
        with E = ``extra_channels`` (zeros when None) -> (B, H, W), or (B, outputs, H, W)."""
        batch = tokens.shape[0]
        h, w = grid_hw
        values = self.fc2(self.drop(F.gelu(self.fc1(tokens))))  # (B, N, s*s*c)
        # (B, N, s*s*c) -> (B, h, w, s*s*c) -> (B, s*s*c, h, w) -> PixelShuffle (B, c, H, W)
        upsampled = self.shuffle(values.view(batch, h, w, -1).permute(0, 3, 1, 2))
        parts = [upsampled]
        if skip is not None:
            parts.append(skip.to(upsampled.dtype))
        if self.extra_channels:
            if extra is None:
                extra = upsampled.new_zeros(batch, self.extra_channels, *upsampled.shape[-2:])
            parts.append(extra.to(upsampled.dtype))
        # The first ``outputs`` channels of the shuffled tokens are a direct per-cell prediction
        # (the seed's per-token MLP output); the decoder adds the full-resolution correction
        # from skip and extras.
        out = upsampled[:, : self.outputs] + self.decoder(torch.cat(parts, dim=1))
        return out[:, 0] if self.outputs == 1 else out  # (B, H, W) or (B, outputs, H, W)
