"""Precision: bf16 autocast runs on CPU; ``resolve_precision`` picks bf16 only where it is fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from no2fusion.models import CrossModalNO2Predictor, precision
from no2fusion.models.precision import (
    autocast_context,
    lightning_precision,
    resolve_precision,
    to_channels_last,
)


def test_bf16_autocast_forward_and_backward_on_cpu(tiny: dict, model_inputs: Any) -> None:
    """The full path (met block, trajectories, transport) runs under bf16 autocast."""
    torch.manual_seed(0)
    model = CrossModalNO2Predictor(2, 13, token_stride=4, **tiny).eval()
    inputs = model_inputs(height=8, width=8)
    with torch.no_grad():
        reference, _ = model(**inputs)
    to_channels_last(model)
    with autocast_context("bf16", "cpu"):
        pred, attention = model(**inputs, return_attention=True)
    assert pred.dtype == torch.bfloat16
    assert attention is not None
    torch.testing.assert_close(
        attention.float().sum(-1), torch.ones(attention.shape[:-1]), atol=2e-2, rtol=0
    )
    # bf16 keeps ~3 significant digits: close to fp32, not equal.
    error = (pred.float() - reference).abs().max() / reference.abs().max()
    assert 0 < error < 0.1
    pred.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_fp32_context_is_a_no_op() -> None:
    with autocast_context("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    assert lightning_precision("bf16") == "bf16-mixed"
    assert lightning_precision("fp32") == "32-true"


def test_explicit_requests_pass_through() -> None:
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp16", "cpu")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"fpu", "avx2", "avx512f", "avx512_bf16"}, "bf16"),
        ({"fpu", "amx_tile", "amx_bf16"}, "bf16"),
        ({"fpu", "avx2", "avx512f"}, "fp32"),
        ({"fp", "asimd"}, "fp32"),
    ],
)
def test_auto_on_cpu_follows_cpu_flags(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], expected: str
) -> None:
    monkeypatch.setattr(precision, "_cpuinfo_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize(
    ("amx", "avx", "expected"),
    [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")],
)
def test_auto_without_cpuinfo_asks_torch_probe(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx: bool, expected: str
) -> None:
    monkeypatch.setattr(precision, "_cpuinfo_flags", lambda: None)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx)
    assert resolve_precision("auto", "cpu") == expected


@pytest.mark.parametrize(
    ("available", "bf16", "expected"), [(True, True, "bf16"), (True, False, "fp32")]
)
def test_auto_on_cuda(
    monkeypatch: pytest.MonkeyPatch, available: bool, bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_precision("auto", "cuda") == expected
    assert resolve_precision("auto", "mps") == "fp32"


def test_cpuinfo_parsing(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: test\nflags\t\t: fpu sse2 avx512_bf16 avx2\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert precision._cpuinfo_flags(cpuinfo) == frozenset({"fpu", "sse2", "avx512_bf16", "avx2"})
    assert precision._cpuinfo_flags(tmp_path / "missing") is None
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert precision._cpuinfo_flags(arm) == frozenset({"fp", "asimd", "bf16"})
