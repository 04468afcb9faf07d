"""Model benchmark: parameters, GFLOP/sample, samples/s, peak RSS, fraction of matmul peak.

Run: ``.venv/bin/python benchmarks/bench_model.py`` (add ``--quick`` for fewer steps,
``--markdown docs/bench_model.md`` to also write the table). Every variant runs in its own
subprocess so its peak RSS is clean. Achieved FLOP/s is compared with this machine's dense
matmul FLOP/s (fp32 and bf16, same thread count) measured at the start of the same run, because
absolute timings drift on a shared machine. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; elementwise ops are not
counted, so the fraction is a lower bound on how busy the machine is).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch


@dataclass(frozen=True)
class Variant:
    kind: str
    stride: int
    precision: str  # fp32 | bf16
    channels_last: bool
    dropout: float = 0.1  # the config default; 0 shows what dropout costs
    compiled: bool = False  # torch.compile (the training layer's training.compile flag)

    @property
    def label(self) -> str:
        layout = "+CL" if self.channels_last else ""
        drop = "" if self.dropout == 0.1 else f" drop={self.dropout:g}"
        compiled = " compiled" if self.compiled else ""
        return f"{self.kind} s={self.stride} {self.precision}{layout}{drop}{compiled}"

    @property
    def spec(self) -> str:
        return (
            f"{self.kind}:{self.stride}:{self.precision}:{int(self.channels_last)}:{self.dropout}"
            f":{int(self.compiled)}"
        )

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """Parse ``kind:stride:precision:channels_last[:dropout[:compiled]]``."""
        kind, stride, precision, channels_last, *rest = spec.split(":")
        dropout = float(rest[0]) if rest else 0.1
        compiled = len(rest) > 1 and rest[1] == "1"
        return cls(kind, int(stride), precision, channels_last == "1", dropout, compiled)


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """Dense (n x n) @ (n x n) FLOP/s in ``dtype`` with the current thread count."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def _inputs(batch: int, size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    sat = torch.randn(batch, channels, size, size, generator=generator)
    sat[:, 1] = (sat[:, 1] > -1).float()  # validity mask channel
    aux = torch.randn(batch, 24, 13, generator=generator)
    return sat, aux


def _count_flops(fn: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    # The fused inference fast path of nn.TransformerEncoderLayer hides its matmuls from the
    # counter; count the equivalent unfused ops instead.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    return int(counter.get_total_flops())


def run_variant(variant: Variant, batch: int, size: int, steps: int, threads: int) -> dict:
    """Build, count and time one variant; returns a JSON-able dict."""
    from no2fusion.config import ModelConfig
    from no2fusion.models import build_model
    from no2fusion.models.precision import autocast_context, to_channels_last

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = ModelConfig.model_validate(
        {"kind": variant.kind, "token_stride": variant.stride, "dropout": variant.dropout}
    )
    model = build_model(config, satellite_in_channels=2)
    if variant.channels_last:
        to_channels_last(model)
    precision: Literal["fp32", "bf16"] = "bf16" if variant.precision == "bf16" else "fp32"
    # fused=True: one kernel for all parameters; the default per-tensor loop cost ~12x more
    # (180 vs 16 ms per step for these 5.9 M parameters on this CPU).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    params = sum(p.numel() for p in model.parameters())
    eager = model
    inputs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for n in {1, batch}:
        sat, aux = _inputs(n, size, 2)
        if variant.channels_last:
            sat = sat.contiguous(memory_format=torch.channels_last)
        inputs[n] = (sat, aux, torch.randn(n, size, size))

    def forward(n: int = batch) -> None:
        sat, aux, _ = inputs[n]
        with torch.no_grad(), autocast_context(precision, "cpu"):
            model(sat, aux)

    def train_step(n: int = batch) -> None:
        sat, aux, target = inputs[n]
        with autocast_context(precision, "cpu"):
            pred, _ = model(sat, aux)
            loss = torch.nn.functional.huber_loss(pred.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # FLOPs are linear in the batch: count one sample (cheap at stride 1), scale to the batch.
    model.eval()
    forward_flops = _count_flops(lambda: forward(1)) * batch
    model.train()
    train_flops = _count_flops(lambda: train_step(1)) * batch
    compile_s = 0.0
    if variant.compiled:
        model = torch.compile(eager)  # type: ignore[assignment]
        start = time.perf_counter()
        train_step()  # compiles the training graph (forward + backward)
        compile_s = time.perf_counter() - start
    # The machine is shared: measure its matmul peak right beside this variant's timings.
    own_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak_own = matmul_peak(own_dtype, seconds=1.0)
    peak_bf16 = peak_own if precision == "bf16" else matmul_peak(torch.bfloat16, seconds=1.0)

    def timed(fn: Any, n: int) -> float:
        """Median seconds per call: robust to bursts of load on a shared machine."""
        fn()  # warm-up (oneDNN primitive creation)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    model.eval()
    forward_s = timed(forward, max(1, steps))
    model.train()
    train_s = timed(train_step, max(1, steps))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        **asdict(variant),
        "label": variant.label,
        "params": params,
        "forward_gflop_per_sample": forward_flops / batch / 1e9,
        "train_gflop_per_sample": train_flops / batch / 1e9,
        "forward_samples_s": batch / forward_s,
        "train_samples_s": batch / train_s,
        "forward_flops_s": forward_flops / forward_s,
        "train_flops_s": train_flops / train_s,
        "peak_rss_gb": peak_rss / 1e9,
        "peak_own_flops_s": peak_own,
        "compile_s": compile_s,
        "peak_bf16_flops_s": peak_bf16,
    }


def _variants(strides: list[int], kinds: list[str]) -> list[Variant]:
    out = []
    for kind in kinds:
        for stride in strides:
            out.append(Variant(kind, stride, "fp32", False))
            if stride != 1:
                out.append(Variant(kind, stride, "bf16", False))
            out.append(Variant(kind, stride, "bf16", True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps, default stride")
    parser.add_argument("--stride1-steps", type=int, default=2, help="timed steps, stride 1")
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--kinds", nargs="+", default=["cross_modal"])
    parser.add_argument(
        "--extra",
        nargs="*",
        default=["cross_modal:4:bf16:1:0"],
        help="extra variants kind:stride:precision:channels_last[:dropout]",
    )
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        variant = Variant.parse(args.worker)
        steps = args.stride1_steps if variant.stride == 1 else args.steps
        print(json.dumps(run_variant(variant, args.batch, args.size, steps, args.threads)))
        return

    torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"matmul peak, {args.threads} threads: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s"
    )
    variants = _variants(args.strides, args.kinds)
    variants += [Variant.parse(spec) for spec in args.extra]
    rows = []
    for variant in variants:
        command = [sys.executable, __file__, "--worker", variant.spec, "--batch", str(args.batch)]
        command += ["--size", str(args.size), "--threads", str(args.threads)]
        command += ["--steps", str(args.steps), "--stride1-steps", str(args.stride1_steps)]
        result = subprocess.run(
            command, capture_output=True, text=True, check=True, env=dict(os.environ)
        )
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["train_vs_own_peak"] = row["train_flops_s"] / row["peak_own_flops_s"]
        row["train_vs_bf16_peak"] = row["train_flops_s"] / row["peak_bf16_flops_s"]
        row["forward_vs_own_peak"] = row["forward_flops_s"] / row["peak_own_flops_s"]
        rows.append(row)
        print(
            f"{row['label']:<30} params {row['params'] / 1e6:5.2f} M  "
            f"fwd {row['forward_gflop_per_sample']:6.2f} GFLOP/sample  "
            f"fwd {row['forward_samples_s']:7.1f}/s  train {row['train_samples_s']:6.2f}/s  "
            f"train {row['train_flops_s'] / 1e9:6.0f} GFLOP/s = "
            f"{100 * row['train_vs_own_peak']:4.1f}% of {row['precision']} peak "
            f"({100 * row['train_vs_bf16_peak']:4.1f}% of bf16; peak beside "
            f"{row['peak_own_flops_s'] / 1e9:.0f} GFLOP/s)  "
            f"RSS {row['peak_rss_gb']:.2f} GB",
            flush=True,
        )
    if args.markdown is not None:
        args.markdown.write_text(_markdown(rows, peaks, args))


def _markdown(rows: list[dict], peaks: dict[str, float], args: argparse.Namespace) -> str:
    lines = [
        f"Batch {args.batch}, {args.size}x{args.size}, {args.threads} threads; matmul peak at "
        f"the start: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} "
        "GFLOP/s; each variant's fraction uses the peak measured beside it.",
        "",
        "| variant | params | fwd GFLOP/sample | fwd samples/s | train samples/s "
        "| train GFLOP/s | matmul GFLOP/s beside it (own / bf16) | % of own matmul peak "
        "| % of bf16 peak | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['params'] / 1e6:.2f} M | {r['forward_gflop_per_sample']:.2f} "
            f"| {r['forward_samples_s']:.1f} | {r['train_samples_s']:.2f} "
            f"| {r['train_flops_s'] / 1e9:.0f} "
            f"| {r['peak_own_flops_s'] / 1e9:.0f} / {r['peak_bf16_flops_s'] / 1e9:.0f} "
            f"| {100 * r['train_vs_own_peak']:.1f} % "
            f"| {100 * r['train_vs_bf16_peak']:.1f} % | {r['peak_rss_gb']:.2f} GB |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
