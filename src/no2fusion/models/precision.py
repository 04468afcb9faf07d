"""Numeric precision: resolve ``training.precision`` (auto | fp32 | bf16) for a device.

Sits in ``models/`` beside the networks; ``training/`` turns the answer into Lightning's
precision string and ``evaluation/`` into an autocast context. ``auto`` picks bf16 where it is
fast (CUDA with bf16 support; CPUs with AMX or AVX512-BF16: 2.5-3x on the training step, see
DESIGN §8) and fp32 everywhere else, so it is never a hard default on hardware without it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

import torch
from torch import nn

Precision = Literal["fp32", "bf16"]
RequestedPrecision = Literal["auto", "fp32", "bf16"]

_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_flags(path: Path = _CPUINFO) -> frozenset[str] | None:
    """The CPU feature flags of the first core in /proc/cpuinfo, or None where unreadable."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_supports_fast_bf16() -> bool:
    """True on CPUs with AMX-BF16 or AVX512-BF16 (native bf16 dot products)."""
    flags = _cpuinfo_flags()
    if flags is not None:
        return bool(flags & _BF16_CPU_FLAGS)
    # No /proc/cpuinfo (macOS, Windows): ask torch's own CPU probe.
    probe_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    probe_avx = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool((probe_amx is not None and probe_amx()) or (probe_avx is not None and probe_avx()))


def cuda_supports_bf16() -> bool:
    """True when CUDA is available and its device supports bf16."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_precision(requested: RequestedPrecision, device: torch.device | str) -> Precision:
    """``auto`` -> bf16 on CUDA (if supported) and on AMX/AVX512-BF16 CPUs, else fp32.

    Explicit ``fp32`` / ``bf16`` are returned as asked (bf16 still works, slowly, elsewhere).
    """
    if requested in ("fp32", "bf16"):
        return requested
    if requested != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {requested!r}")
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if cuda_supports_bf16() else "fp32"
    if kind == "cpu":
        return "bf16" if cpu_supports_fast_bf16() else "fp32"
    return "fp32"


def autocast_context(
    precision: Precision, device: torch.device | str
) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on ``device`` for ``bf16``; a no-op context for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def lightning_precision(precision: Precision) -> str:
    """Lightning's ``Trainer(precision=...)`` string: ``32-true`` or ``bf16-mixed``."""
    return "bf16-mixed" if precision == "bf16" else "32-true"


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the conv weights NHWC (in place); conv inputs then follow and tokens are free views."""
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
