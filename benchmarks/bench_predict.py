"""Benchmark: predict one day over Europe at 0.1 deg (35-55 N, 15 W-25 E: 200 x 400 cells).

Goal (issue 7): <= 2 s on 2 cores, from a cube. The cube (2 days: input day and target day,
ERA5-like 0.25 deg meteorology with a 1 deg margin) is written through ``io.cube`` with seeded
random fields (40 % of cells cloudy); the model is the default config's (seed architecture,
token stride 4) with random weights, since timing does not depend on the weights. Timed: open
the cube -> ``predict_day`` (crop to the two days, samples per tile, tiled model, blending,
inverse normalization) -> ``write_prediction``. Also printed: the model's FLOP per tile and the
achieved FLOP/s as a fraction of this machine's fp32 matmul FLOP/s measured in the same run
(absolute times drift on a shared machine; the ratio does not). The process CPU time is
printed too: on a loaded machine wall time is inflated, CPU time much less so.

    .venv/bin/python benchmarks/bench_predict.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_europe_cube(path: Path, seed: int = 0) -> None:
    from no2fusion.grid import create_target_grid
    from no2fusion.io.cube import CubeLayout, create_cube, write_day
    from no2fusion.vocab import FEATURES, MET_VARIABLES, REGION_LEGEND

    rng = np.random.default_rng(seed)
    grid = create_target_grid(
        {"lat_min": 35.0, "lat_max": 55.0, "lon_min": -15.0, "lon_max": 25.0}, 0.1
    )
    met_lat = np.arange(34.0, 56.0 + 1e-9, 0.25)
    met_lon = np.arange(-16.0, 26.0 + 1e-9, 0.25)
    days = np.array(["2024-03-04", "2024-03-05"], dtype="datetime64[D]").astype("datetime64[ns]")
    layout = CubeLayout(days, grid.lat_edges, grid.lon_edges, met_lat, met_lon, 24, False)
    region = rng.integers(0, 5, grid.shape).astype(np.int8)
    create_cube(path, layout, region, grid.cell_area_m2(), REGION_LEGEND, {"synthetic": 1})
    shape_met = (24, met_lat.size, met_lon.size)
    for index, day in enumerate(days):
        no2 = rng.lognormal(3.5, 0.6, grid.shape).astype(np.float32)  # umol m-2
        no2[rng.random(grid.shape) < 0.4] = np.nan
        values = {
            "no2": no2,
            "no2_precision": np.full(grid.shape, 10.0, np.float32),
            "no2_weight": np.ones(grid.shape, np.float32),
            "no2_count": np.ones(grid.shape, np.int32),
            "overpass_time": day + np.timedelta64(12, "h"),
            "met_time": day + np.timedelta64(12, "h") + np.arange(-23, 1) * np.timedelta64(1, "h"),
            "features": rng.normal(0, 1, (*shape_met, len(FEATURES))).astype(np.float32),
            **{f"met_{v}": rng.normal(0, 1, shape_met).astype(np.float32) for v in MET_VARIABLES},
        }
        write_day(path, index, values)


def matmul_flops(seconds: float = 1.0, n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2.0 * n**3 * count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from torch.utils.flop_counter import FlopCounterMode

    from no2fusion.config import Config
    from no2fusion.data.arrays import Normalizers
    from no2fusion.evaluation.inference import InferenceSettings
    from no2fusion.evaluation.predict import predict_day, write_prediction
    from no2fusion.evaluation.tiling import overlapping_tiles
    from no2fusion.io.cube import open_cube
    from no2fusion.models import build_model
    from no2fusion.models.precision import autocast_context, cpu_supports_fast_bf16
    from no2fusion.pipeline.normalize import RobustNormalizer

    config = Config()  # the default run: seed model, tile 64, lead 1
    torch.manual_seed(0)
    model = build_model(config.model, satellite_in_channels=2).eval()
    rng = np.random.default_rng(1)
    normalizers = Normalizers(
        RobustNormalizer().fit(rng.lognormal(3.5, 0.6, 10_000)),
        RobustNormalizer().fit(rng.normal(0, 1, (100, 24, 13)), axis=(0, 1)),
    )
    size = config.data.tile_size
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 2, size, size), torch.zeros(1, 24, 13))
    tile_flop = float(counter.get_total_flops())
    peak = matmul_flops()
    print(
        f"threads {args.threads}; fp32 matmul {peak / 1e9:.0f} GFLOP/s; "
        f"model {tile_flop / 1e9:.2f} GFLOP per {size}x{size} tile; "
        f"CPU bf16 fast path: {cpu_supports_fast_bf16()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cube_path = Path(tmp) / "europe.zarr"
        write_europe_cube(cube_path)
        day = dt.date(2024, 3, 5)
        for precision in ("fp32", "bf16"):
            for overlap in (16, 8):
                n_tiles = len(overlapping_tiles((200, 400), size, overlap))
                times, model_times, cpu_times = [], [], []
                for _ in range(args.repeats):
                    start, cpu_start = time.perf_counter(), time.process_time()
                    cube = open_cube(cube_path)
                    settings = InferenceSettings.for_run(
                        config, overlap=overlap, batch_size=32, device="cpu", precision=precision
                    )
                    ds = predict_day(model, config, normalizers, cube, day, settings, cube_path)
                    write_prediction(ds, Path(tmp) / "pred.nc")
                    times.append(time.perf_counter() - start)
                    cpu_times.append(time.process_time() - cpu_start)
                    # the same forward passes alone (predict_day made the model channels_last)
                    sat = torch.zeros(32, 2, size, size).contiguous(
                        memory_format=torch.channels_last
                    )
                    aux = torch.zeros(32, 24, 13)
                    start = time.perf_counter()
                    with torch.inference_mode(), autocast_context(precision, "cpu"):
                        for first in range(0, n_tiles, 32):
                            n = min(32, n_tiles - first)
                            model(sat[:n], aux[:n])
                    model_times.append(time.perf_counter() - start)
                best, model_best = min(times), min(model_times)
                all_times = ", ".join(f"{t:.2f}" for t in times)
                achieved = n_tiles * tile_flop / model_best
                print(
                    f"{precision:4s} overlap {overlap:2d}: {n_tiles} tiles, end-to-end "
                    f"{best:.2f} s (best of {args.repeats}; all {all_times}; "
                    f"CPU time {min(cpu_times):.2f} s)"
                    f"; model alone {model_best:.2f} s = {achieved / 1e9:.0f} GFLOP/s = "
                    f"{achieved / peak:.2f} x fp32 matmul; goal <= 2 s: "
                    f"{'met' if best <= 2.0 else 'NOT met'}"
                )
                assert ds["no2_pred"].shape == (1, 200, 400)


if __name__ == "__main__":
    main()
