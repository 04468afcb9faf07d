"""Auxiliary encoder: Transformer over the hourly meteorology, giving temporal tokens.

Sits in ``models/``. ``AuxiliaryEncoder``: the 13 normalized features over T hourly steps
averaged over the tile, (B, T, F), plus an optional calendar vector (B, 7), -> (B, T, D)
temporal tokens: linear projection, learnable positional encoding (so the order of the hours
matters), the calendar embedding added to every step, pre-norm Transformer encoder layers with
SDPA inside, a final LayerNorm.

``LocalMeteorology``: meteorology where each satellite token is. The features of the met block
around the tile (B, T, F, mh, mw) are sampled (bilinear) at every token centre, projected, and
added to the tile's temporal tokens: (B, N, T, D), so each token's keys and values are its own
hourly weather in the context of the tile's day.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from no2fusion.models.transport import sample_at


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
        calendar_dim: int = 7,
    ) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.calendar_dim = calendar_dim
        self.max_time_steps = max_time_steps
        self.input_proj = nn.Linear(feature_dim, embed_dim)
        self.calendar_proj = nn.Linear(calendar_dim, embed_dim)
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

    def forward(self, aux: Tensor, calendar: Tensor | None = None) -> Tensor:
        """aux (B, T, F) normalized features [, calendar (B, 7)] -> temporal tokens (B, T, D)."""
        if aux.ndim != 3 or aux.shape[-1] != self.feature_dim:
            raise ValueError(
                f"auxiliary input must be (B, T, {self.feature_dim}), got {tuple(aux.shape)}"
            )
        steps = aux.shape[1]
        if steps > self.max_time_steps:
            raise ValueError(f"{steps} time steps exceed max_time_steps {self.max_time_steps}")
        tokens = self.input_proj(aux) + self.position[:, :steps]  # (B, T, D)
        if calendar is not None and calendar.shape[-1] == self.calendar_dim:
            tokens = tokens + self.calendar_proj(calendar)[:, None]  # same for every hour
        return self.norm(self.layers(tokens))


class LocalMeteorology(nn.Module):
    """(met block (B, T, F, mh, mw), token positions, tile tokens (B, T, D)) -> (B, N, T, D)."""

    def __init__(self, feature_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.local_proj = nn.Linear(feature_dim, embed_dim)

    def forward(self, block: Tensor, rows: Tensor, cols: Tensor, tile_tokens: Tensor) -> Tensor:
        """block (B, T, F, mh, mw) normalized features; rows/cols (B, h, w) met-block index
        positions of the token centres; tile_tokens (B, T, D) -> context (B, N=h*w, T, D): the
        tile's temporal token of each hour plus a projection of the token's own features.

        Linear in the local features on purpose: the keys, values and the feed-forward after
        the attention add the nonlinearity, and (B, N, T, D) is the largest tensor of the model,
        so nothing wider than it is built here."""
        batch, steps, features = block.shape[:3]
        flat = block.reshape(batch, steps * features, *block.shape[-2:])  # (B, T*F, mh, mw)
        local = sample_at(flat, rows, cols)  # (B, T*F, h, w)
        # (B, T*F, h, w) -> (B, T, F, N) -> (B, N, T, F) -> (B, N, T, D)
        local = local.reshape(batch, steps, features, -1).permute(0, 3, 1, 2)
        context = self.local_proj(local.to(self.local_proj.weight.dtype))  # (B, N, T, D)
        # in place: no second (B, N, T, D) tensor (the linear's backward does not need its output)
        return context.add_(tile_tokens[:, None].to(context.dtype))
