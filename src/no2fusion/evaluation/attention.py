"""Attention inspection: which hour each place looks at, how selective it is, per test day.

Sits in ``evaluation/``; pure numpy. Input: one sample's cross-attention weights
(layers, heads, tokens, T) from the cross-modal model (``return_attention=True``); tokens are
the row-major (H / stride) x (W / stride) grid of satellite tokens. The plotting of these maps
with the day's wind lives in ``report/plots.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from no2fusion.evaluation.ablation import attention_entropy
from no2fusion.evaluation.metrics import as_array


@dataclass(frozen=True)
class AttentionSummary:
    """argmax_hour, entropy_ratio: (h, w) token maps; mean_weight: (T,) over tokens/heads/layers."""

    argmax_hour: NDArray[np.float64]
    entropy_ratio: NDArray[np.float64]
    mean_weight: NDArray[np.float64]


def summarise_attention(
    weights: ArrayLike, token_shape: tuple[int, int], hours: ArrayLike
) -> AttentionSummary:
    """Maps of one sample's attention (layers, heads, tokens, T).

    ``argmax_hour``: the hour offset (from ``hours``, (T,)) with the largest weight after
    averaging over layers and heads; ``entropy_ratio``: per-token mean over layers and heads
    of entropy / ln T; ``mean_weight``: mean weight per hour over everything else.
    """
    p = as_array(weights)
    if p.ndim != 4:
        raise ValueError(f"attention must be (layers, heads, tokens, T), got {p.shape}")
    h, w = token_shape
    steps = p.shape[-1]
    if p.shape[2] != h * w:
        raise ValueError(f"{p.shape[2]} tokens do not form a {h} x {w} grid")
    mean_over_heads = p.mean(axis=(0, 1))  # (tokens, T)
    hour_values = as_array(hours)
    argmax = hour_values[np.argmax(mean_over_heads, axis=-1)].reshape(h, w)  # (h, w)
    entropy = attention_entropy(p).mean(axis=(0, 1)) / math.log(steps)  # (tokens,)
    return AttentionSummary(
        argmax_hour=argmax,
        entropy_ratio=entropy.reshape(h, w),
        mean_weight=mean_over_heads.mean(axis=0),
    )


def token_centres(
    lat: ArrayLike, lon: ArrayLike, stride: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centres of stride x stride token blocks from cell centres (H,), (W,) -> (H/s,), (W/s,)."""
    la, lo = as_array(lat), as_array(lon)
    return la.reshape(-1, stride).mean(axis=1), lo.reshape(-1, stride).mean(axis=1)


def pick_days(valid_counts: ArrayLike, n: int) -> list[int]:
    """Indices of ``n`` test samples spread through the split, each the best-observed of its
    stretch (most valid target cells), so the maps show days with something to see."""
    counts = as_array(valid_counts)
    if counts.size == 0:
        return []
    chunks = np.array_split(np.arange(counts.size), min(n, counts.size))
    return [int(chunk[np.argmax(counts[chunk])]) for chunk in chunks if chunk.size]
