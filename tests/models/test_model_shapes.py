"""Shapes, input checks, gradients and the config switch for the three model kinds."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import no2fusion
from no2fusion.config import Config
from no2fusion.models import (
    MODEL_KINDS,
    ConcatFusion,
    CrossModalNO2Predictor,
    SatelliteOnly,
    build_model,
)

KINDS = sorted(MODEL_KINDS)


def _inputs(batch: int = 2, channels: int = 2, h: int = 8, w: int = 16, steps: int = 24):
    generator = torch.Generator().manual_seed(0)
    sat = torch.randn(batch, channels, h, w, generator=generator)
    aux = torch.randn(batch, steps, 13, generator=generator)
    return sat, aux


@pytest.mark.parametrize("stride", [1, 4])
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_every_kind_and_stride(kind: str, stride: int, tiny: dict) -> None:
    torch.manual_seed(0)
    model = MODEL_KINDS[kind](2, 13, token_stride=stride, **tiny)
    sat, aux = _inputs(h=8, w=16)
    pred, attention = model(sat, aux)
    assert pred.shape == (2, 8, 16)
    assert attention is None
    pred_a, attention = model(sat, aux, return_attention=True)
    assert pred_a.shape == (2, 8, 16)
    if kind == "cross_modal":
        assert attention is not None
        assert attention.shape == (2, 2, 4, (8 // stride) * (16 // stride), 24)
    else:
        assert attention is None


@pytest.mark.parametrize("stride", [1, 4])
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_with_the_met_block_wind_and_calendar(
    kind: str, stride: int, tiny: dict, model_inputs: Any
) -> None:
    """The dataset's form: met block (B, T, F, mh, mw), wind, affine and weekday."""
    torch.manual_seed(0)
    model = MODEL_KINDS[kind](2, 13, token_stride=stride, **tiny)
    inputs = model_inputs(height=8, width=16)
    pred, attention = model(**inputs, return_attention=True)
    assert pred.shape == (2, 8, 16)
    assert torch.isfinite(pred).all()
    if kind == "cross_modal":
        assert attention is not None
        assert attention.shape == (2, 2, 4, (8 // stride) * (16 // stride), 24)
    else:
        assert attention is None


def test_indivisible_size_and_wrong_inputs_raise_clear_errors(tiny: dict) -> None:
    model = CrossModalNO2Predictor(2, 13, token_stride=4, **tiny)
    sat, aux = _inputs(h=10, w=16)
    with pytest.raises(ValueError, match="not divisible by token_stride 4"):
        model(sat, aux)
    sat, aux = _inputs(channels=3)
    with pytest.raises(ValueError, match=r"satellite input must be \(B, 2, H, W\)"):
        model(sat, aux)
    sat, _ = _inputs()
    with pytest.raises(ValueError, match="auxiliary input"):
        model(sat, torch.randn(2, 24, 12))
    with pytest.raises(ValueError, match="max_time_steps"):
        model(sat, torch.randn(2, 49, 13))
    with pytest.raises(ValueError, match="not divisible by num_attention_heads"):
        CrossModalNO2Predictor(2, 13, **{**tiny, "num_attention_heads": 5})


@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_gets_a_gradient(kind: str, tiny: dict, model_inputs: Any) -> None:
    torch.manual_seed(1)
    model = MODEL_KINDS[kind](2, 13, token_stride=4, **{**tiny, "dropout": 0.1})
    model.train()
    pred, _ = model(**model_inputs(height=8, width=8))
    (pred**2).mean().backward()
    missing = [
        name
        for name, parameter in model.named_parameters()
        if parameter.grad is None or not torch.any(parameter.grad != 0)
    ]
    assert missing == []


def test_stride_one_also_trains_every_parameter(tiny: dict, model_inputs: Any) -> None:
    torch.manual_seed(2)
    model = CrossModalNO2Predictor(2, 13, token_stride=1, **tiny)
    pred, _ = model(**model_inputs(height=8, width=8))
    pred.sum().backward()
    assert all(p.grad is not None and torch.any(p.grad != 0) for p in model.parameters())


def test_satellite_only_ignores_meteorology_but_reads_the_calendar(
    tiny: dict, model_inputs: Any
) -> None:
    torch.manual_seed(3)
    model = SatelliteOnly(2, 13, **tiny).eval()
    inputs = model_inputs()
    with torch.no_grad():
        first, _ = model(**inputs)
        other_weather = {
            **inputs,
            "aux": torch.randn_like(inputs["aux"]),
            "wind": torch.randn_like(inputs["wind"]),
        }
        second, _ = model(**other_weather)
        other_day, _ = model(**{**inputs, "calendar": inputs["calendar"].roll(1, dims=1)})
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert (first - other_day).abs().max() > 0
    assert model.auxiliary_encoder is None and model.transport is None


def test_baselines_are_comparably_sized() -> None:
    models = {kind: MODEL_KINDS[kind](2, 13, token_stride=4) for kind in KINDS}
    sizes = {kind: sum(p.numel() for p in m.parameters()) for kind, m in models.items()}
    # Concat keeps everything but swaps attention (Q, KV, O: 4 D^2) for a 2D -> D mix (2 D^2).
    assert 0.9 < sizes["concat"] / sizes["cross_modal"] < 1.0
    # Satellite-only drops what reads the meteorology (the ablated modality: encoder, local
    # sampling, transport) and keeps a satellite path of the same size: same CNN, same token
    # layers' width/count, same head and decoder.
    cross_modal = models["cross_modal"]
    meteorology = {
        id(p): p.numel()
        for name in ("auxiliary_encoder", "local_meteorology", "transport", "transport_gain")
        for p in getattr(cross_modal, name).parameters()
    }
    ratio = sizes["satellite_only"] / (sizes["cross_modal"] - sum(meteorology.values()))
    assert 0.9 < ratio < 1.0


def test_seed_snippet_runs_as_written() -> None:
    torch.manual_seed(0)
    satellite_data = torch.randn(2, 1, 16, 16)
    auxiliary_data = torch.randn(2, 24, 13)
    model = no2fusion.CrossModalNO2Predictor(
        satellite_in_channels=1,
        auxiliary_feature_dim=13,
        embed_dim=256,
        num_attention_heads=8,
        num_attention_layers=2,
    )
    predictions, attention = model(satellite_data, auxiliary_data)
    assert predictions.shape == (2, 16, 16)
    assert attention is None
    assert torch.isfinite(predictions).all()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("cross_modal", CrossModalNO2Predictor),
        ("concat", ConcatFusion),
        ("satellite_only", SatelliteOnly),
    ],
)
def test_build_model_kind_switch(test_config: Config, kind: str, expected: type) -> None:
    config = test_config.model.model_copy(
        update={"kind": kind, "token_stride": 2, "residual": "none"}
    )
    model = build_model(config, satellite_in_channels=3)
    assert type(model) is expected
    assert model.token_stride == 2
    assert model.embed_dim == test_config.model.embed_dim
    pred, _ = model(torch.randn(1, 3, 16, 16), torch.randn(1, 24, 13))
    assert pred.shape == (1, 16, 16)


@pytest.mark.parametrize("kind", KINDS)
def test_residual_prediction_is_the_named_channel_plus_the_correction(
    kind: str, test_config: Config
) -> None:
    """With ``model.residual`` the output is that input channel plus what the network adds:
    the same weights without the residual give exactly the correction."""
    names = ("no2", "no2_valid", "composite", "composite_fraction", "climatology")
    config = test_config.model.model_copy(
        update={"kind": kind, "token_stride": 2, "residual": "none"}
    )
    torch.manual_seed(0)
    config = config.model_copy(update={"residual_gain": False})  # the additive residual alone
    plain = build_model(config, 5, channel_names=names).eval()
    residual_config = config.model_copy(update={"residual": "climatology"})
    residual = build_model(residual_config, 5, channel_names=names).eval()
    residual.load_state_dict(plain.state_dict())
    sat = torch.randn(2, 5, 16, 16)
    aux = torch.randn(2, 24, 13)
    with torch.no_grad():
        correction, _ = plain(sat, aux)
        pred, _ = residual(sat, aux)
    torch.testing.assert_close(pred, correction + sat[:, 4])


def _gain_model(test_config: Config) -> torch.nn.Module:
    names = ("no2", "no2_valid", "composite", "composite_fraction", "climatology")
    config = test_config.model.model_copy(update={"token_stride": 2, "residual_gain": True})
    return build_model(config, 5, channel_names=names)


def test_residual_gain_scales_only_the_local_excess_of_the_base(test_config: Config) -> None:
    """prediction = correction + base + (exp(g) - 1) * relu(base - its 5 x 5 mean), analytic:
    an isolated spike s on a flat base b rises s * 24/25 above its neighbourhood mean; its
    neighbours and a flat field have no excess, so the gain leaves them alone."""
    model = _gain_model(test_config)
    sat = torch.zeros(1, 5, 16, 16)
    sat[:, 4] = 0.5  # flat climatology base (normalized)
    sat[0, 4, 8, 8] += 5.0  # a one-cell source
    correction = torch.full((1, 16, 16), 0.1)
    for raw, gain in ((0.0, 0.0), (1.0, 2.0 * math.tanh(0.5)), (1e6, 2.0), (-1e6, -2.0)):
        head = torch.stack([correction, torch.full_like(correction, raw)], dim=1)  # (1, 2, H, W)
        pred = model._with_residual(head, sat)
        expected = correction + sat[:, 4]
        expected[0, 8, 8] += math.expm1(gain) * 5.0 * 24 / 25
        torch.testing.assert_close(pred, expected)
    flat = torch.zeros(1, 5, 16, 16)
    flat[:, 4] = 3.0
    head = torch.stack([correction, torch.full_like(correction, 1.5)], dim=1)
    torch.testing.assert_close(model._with_residual(head, flat), correction + 3.0)


def test_residual_gain_map_is_the_head_second_output(test_config: Config) -> None:
    """The trained path: the head gives (B, 2, H, W) and the prediction is (B, H, W)."""
    model = _gain_model(test_config).eval()
    assert model.head.outputs == 2
    with torch.no_grad():
        pred, _ = model(torch.randn(2, 5, 16, 16), torch.randn(2, 24, 13))
    assert pred.shape == (2, 16, 16) and torch.isfinite(pred).all()


def test_residual_needs_a_channel_that_exists(test_config: Config) -> None:
    config = test_config.model.model_copy(update={"residual": "climatology"})
    with pytest.raises(ValueError, match="climatology"):
        build_model(config, 2, channel_names=("no2", "no2_valid"))
    with pytest.raises(ValueError, match="climatology"):
        build_model(config, 5)  # no names: the channel cannot be found
