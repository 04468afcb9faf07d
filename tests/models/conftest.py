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


def full_inputs(
    batch: int = 2,
    channels: int = 2,
    height: int = 8,
    width: int = 8,
    steps: int = 24,
    features: int = 13,
    margin: int = 2,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The dataset's form of the model inputs, random but well-formed: ``sat`` (B, C, H, W), the
    met block ``aux`` (B, T, F, mh, mw) on the target grid's own spacing with ``margin`` cells
    each side (affine a = margin, b = 1), ``wind`` (B, T, 2, mh, mw) of about one cell per hour,
    ``met_affine`` (B, 4) and a one-hot weekday ``calendar`` (B, 7)."""
    generator = torch.Generator().manual_seed(seed)
    mh, mw = height + 2 * margin + 1, width + 2 * margin + 1
    calendar = torch.zeros(batch, 7)
    calendar[torch.arange(batch), torch.arange(batch) % 7] = 1.0
    return {
        "sat": torch.randn(batch, channels, height, width, generator=generator),
        "aux": torch.randn(batch, steps, features, mh, mw, generator=generator),
        "wind": torch.randn(batch, steps, 2, mh, mw, generator=generator),
        "met_affine": torch.tensor([float(margin), 1.0, float(margin), 1.0]).repeat(batch, 1),
        "calendar": calendar,
    }


@pytest.fixture
def model_inputs() -> Any:
    """``full_inputs`` as a fixture: ``model(**model_inputs(height=8, width=16))``."""
    return full_inputs
