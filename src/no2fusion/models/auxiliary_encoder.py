"""Auxiliary encoder: Transformer over the hourly meteorology, giving temporal tokens.

Sits in ``models/``. Input is the 13 normalized features over T hourly steps, (B, T, F);
output is (B, T, D) temporal tokens that the cross-modal attention uses as keys/values.
Linear projection, learnable positional encoding (so the order of the hours matters),
pre-norm Transformer encoder layers with SDPA inside, a final LayerNorm.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_positions(steps: int, dim: int) -> Tensor:
    """(steps, dim) sin/cos encodings (Vaswani et al. 2017), RMS 1 per row."""
    position = torch.arange(steps, dtype=torch.float32)[:, None]  # (T, 1)
    half = (dim + 1) // 2
    frequency = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = position * frequency[None]  # (T, half)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[:, :dim]  # (T, dim)
    return table / table.pow(2).mean(dim=1, keepdim=True).sqrt()


class AuxiliaryEncoder(nn.Module):
    """(B, T, F) -> (B, T, D); T <= ``max_time_steps``."""

    def __init__(
        self,
        feature_dim: int = 13,
        embed_dim: int = 256,
        num_layers: int = 4,
        num_heads: int = 8,
        dropout: float = 0.1,
        max_time_steps: int = 48,
    ) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.max_time_steps = max_time_steps
        self.input_proj = nn.Linear(feature_dim, embed_dim)
        # Learnable, initialized with sinusoids of unit RMS: each hour is distinguishable from
        # the first step (a 0.02-std random init left attention blind to order for ~400 steps).
        self.position = nn.Parameter(sinusoidal_positions(max_time_steps, embed_dim)[None])
        layer = nn.TransformerEncoderLayer(
            embed_dim,
            num_heads,
            dim_feedforward=4 * embed_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, aux: Tensor) -> Tensor:
        """aux (B, T, F) normalized features -> temporal tokens (B, T, D)."""
        if aux.ndim != 3 or aux.shape[-1] != self.feature_dim:
            raise ValueError(
                f"auxiliary input must be (B, T, {self.feature_dim}), got {tuple(aux.shape)}"
            )
        steps = aux.shape[1]
        if steps > self.max_time_steps:
            raise ValueError(f"{steps} time steps exceed max_time_steps {self.max_time_steps}")
        tokens = self.input_proj(aux) + self.position[:, :steps]  # (B, T, D)
        return self.norm(self.layers(tokens))
