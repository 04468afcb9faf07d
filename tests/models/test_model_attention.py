"""Cross-modal attention: weights are a distribution over T, the two paths agree, order matters."""

from __future__ import annotations

import pytest
import torch

from no2fusion.models import ConcatFusion, CrossModalNO2Predictor
from no2fusion.models.cross_attention import CrossAttention


def _inputs(batch: int = 2, h: int = 8, w: int = 8, steps: int = 24):
    generator = torch.Generator().manual_seed(5)
    return torch.randn(batch, 2, h, w, generator=generator), torch.randn(
        batch, steps, 13, generator=generator
    )


@pytest.mark.parametrize("stride", [1, 4])
def test_attention_is_a_distribution_over_time_steps(stride: int, tiny: dict) -> None:
    torch.manual_seed(0)
    model = CrossModalNO2Predictor(2, 13, token_stride=stride, **tiny).eval()
    sat, aux = _inputs(steps=20)
    with torch.no_grad():
        _, attention = model(sat, aux, return_attention=True)
    assert attention is not None
    assert attention.shape == (2, 2, 4, (8 // stride) ** 2, 20)
    assert torch.all(attention >= 0)
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(attention.shape[:-1]))
    # Not degenerate at init: neither one-hot nor exactly uniform.
    assert attention.max() < 0.99
    assert attention.std(dim=-1).mean() > 1e-4


@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize("stride", [1, 4])
def test_fast_and_explicit_paths_agree(stride: int, qk_norm: bool, tiny: dict) -> None:
    torch.manual_seed(1)
    model = CrossModalNO2Predictor(2, 13, token_stride=stride, qk_norm=qk_norm, **tiny).eval()
    sat, aux = _inputs()
    with torch.no_grad():
        fast, none = model(sat, aux)
        explicit, attention = model(sat, aux, return_attention=True)
    assert none is None and attention is not None
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-5)


def test_explicit_weights_reproduce_sdpa_output_per_layer() -> None:
    torch.manual_seed(2)
    layer = CrossAttention(embed_dim=16, num_heads=2, qk_norm=False)
    query, context = torch.randn(3, 10, 16), torch.randn(3, 6, 16)
    fast, no_weights = layer(query, context)
    explicit, weights = layer(query, context, return_weights=True)
    assert no_weights is None and weights is not None and weights.shape == (3, 2, 10, 6)
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-6)
    # Analytic check of one head: softmax(q k^T / sqrt(d)) with the layer's own projections.
    q = layer.q_proj(query)[..., :8]
    k = layer.kv_proj(context)[..., :8]
    expected = torch.softmax(q @ k.transpose(1, 2) / 8**0.5, dim=-1)
    torch.testing.assert_close(weights[:, 0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_class", [CrossModalNO2Predictor, ConcatFusion])
def test_permuting_time_steps_changes_the_output(model_class: type, tiny: dict) -> None:
    torch.manual_seed(3)
    model = model_class(2, 13, token_stride=4, **tiny).eval()
    sat, aux = _inputs()
    reversed_aux = aux.flip(dims=[1])  # same hours' values, opposite order
    with torch.no_grad():
        pred, _ = model(sat, aux)
        permuted, _ = model(sat, reversed_aux)
        again, _ = model(sat, aux)
    torch.testing.assert_close(pred, again, rtol=0, atol=0)  # deterministic in eval
    relative = (pred - permuted).abs().mean() / pred.abs().mean()
    assert relative > 1e-2


def test_cross_modal_learns_to_read_one_hour_of_meteorology(tiny: dict) -> None:
    """The target is feature 5 (BLH) at hour 20 of each sample: only the meteorology holds it.

    A few hundred Adam steps must fit it (fraction of variance left < 0.3); reversing the hour
    order must then break the fit, because the model picked that hour by position.
    """
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = CrossModalNO2Predictor(2, 13, token_stride=4, **{**tiny, "num_attention_layers": 1})
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        aux = torch.randn(size, 24, 13, generator=generator)
        target = aux[:, 20, 5, None, None].expand(size, 8, 8)  # (B, H, W)
        return torch.ones(size, 2, 8, 8), aux, target

    for _ in range(300):
        sat, aux, target = batch(8)
        pred, _ = model(sat, aux)
        loss = (pred - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    sat, aux, target = batch(64)
    with torch.no_grad():
        pred, _ = model(sat, aux)
        reversed_pred, _ = model(sat, aux.flip(dims=[1]))
    variance = target.var()
    assert (pred - target).square().mean() / variance < 0.3
    assert (reversed_pred - target).square().mean() / variance > 1.0


@pytest.mark.parametrize("qk_norm", [True, False])
def test_per_token_context_matches_attention_over_materialised_keys_and_values(
    qk_norm: bool,
) -> None:
    """The per-token path never builds the values (and folds their projection after the
    weighted mean): output, weights and gradients equal softmax(q k^T / sqrt(d)) v per token."""
    torch.manual_seed(3)
    heads, dim, tokens, steps = 2, 16, 5, 7
    layer = CrossAttention(embed_dim=dim, num_heads=heads, qk_norm=qk_norm)
    query = torch.randn(3, tokens, dim, requires_grad=True)
    context = torch.randn(3, tokens, steps, dim, requires_grad=True)
    out, weights = layer(query, context, return_weights=True)

    d = dim // heads
    q = layer.q_norm(layer.q_proj(query).view(3, tokens, heads, d))  # (B, N, h, d)
    kv = layer.kv_proj(context).view(3, tokens, steps, 2, heads, d)
    k, v = layer.k_norm(kv[:, :, :, 0]), kv[:, :, :, 1]  # (B, N, T, h, d)
    expected_weights = torch.softmax(torch.einsum("bnhd,bnthd->bnht", q, k) / d**0.5, dim=-1)
    attended = torch.einsum("bnht,bnthd->bnhd", expected_weights, v).reshape(3, tokens, dim)
    expected = layer.out_proj(attended)
    assert weights is not None
    torch.testing.assert_close(weights, expected_weights.permute(0, 2, 1, 3))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), [query, context, layer.kv_proj.weight])
    expected_grads = torch.autograd.grad(
        expected.square().sum(), [query, context, layer.kv_proj.weight]
    )
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5)
