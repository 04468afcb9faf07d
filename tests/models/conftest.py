"""Tiny model sizes for the model tests (one thread: the suite shares 2 cores)."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_TINY: dict[str, Any] = {
    "embed_dim": 32,
    "num_attention_heads": 4,
    "num_attention_layers": 2,
    "cnn_channels": (8, 16, 32, 32),
    "auxiliary_layers": 1,
    "auxiliary_heads": 4,
    "dropout": 0.0,
    "head_hidden_dim": 16,
}


@pytest.fixture
def tiny() -> dict[str, Any]:
    """Keyword arguments for a tiny model (embed 32, 4 heads, 2 fusion layers, no dropout)."""
    return dict(_TINY)
