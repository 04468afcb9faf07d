"""The whole evaluation of a trained run: scores, baselines, ablation, robustness, attention.

Sits at the end of ``evaluation/``: it loads checkpoints through ``training.checkpoint``, cuts
the test split with ``data.dataset`` exactly as training did (same split, same normalizers),
runs the models tile by tile, maps everything back to umol m-2 and scores the model and every
baseline on the identical cells with ``metrics.py``. ``evaluate_run`` returns the content of
``metrics.json`` plus the arrays the report needs (``EvaluationResult``); ``report/`` draws and
writes them (``commands/run.py`` wires the two).

Scored cells: valid target cells of the test days (lead >= 1), or, for gap filling (lead 0),
the valid target cells hidden from the input — the reconstructed ones. A cell counts only where
the model and every baseline have a prediction, so all rows of the headline table share cells.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from no2fusion.config import Config
from no2fusion.data.dataset import CubeArrays, NO2TileDataset, Normalizers
from no2fusion.data.splits import Split
from no2fusion.evaluation import ablation, robustness
from no2fusion.evaluation.attention import pick_days, summarise_attention, token_centres
from no2fusion.evaluation.baselines import (
    CellFeatures,
    MonthlyClimatology,
    fit_lightgbm,
    persistence,
    predict_lightgbm,
)
from no2fusion.evaluation.breakdown import (
    by_pollution_level,
    by_region,
    by_season,
    pollution_bin_edges,
)
from no2fusion.evaluation.metrics import compute_all, relative_change
from no2fusion.io.cube import open_cube
from no2fusion.models.precision import Precision, autocast_context, resolve_precision
from no2fusion.training.checkpoint import load_checkpoint
from no2fusion.vocab import FEATURE_GROUPS, FEATURES, NO2_UNITS, UMOL_M2_TO_MOLEC_CM2

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
Log = Callable[[str], None]
METRICS_SCHEMA_VERSION = 1
NEURAL_BASELINES = ("concat", "satellite_only")
# Met features given to LightGBM as their 24-h means (the time features are left at overpass).
_MET_MEAN_FEATURES = FEATURES[:9]


@dataclass
class Collected:
    """Every sample of one split, stacked. sat (N, C, H, W), aux (N, T, F) normalized;
    target_mask / hidden_mask (N, H, W); day_index, row, col (N,)."""

    sat: F32
    aux: F32
    target_mask: NDArray[np.bool_]
    hidden_mask: NDArray[np.bool_]
    day_index: NDArray[np.int64]
    row: NDArray[np.int64]
    col: NDArray[np.int64]

    def subset(self, index: NDArray[np.int64]) -> Collected:
        return Collected(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


def collect(dataset: NO2TileDataset) -> Collected:
    """Stack all samples of an evaluation-mode dataset (deterministic tiles and masks)."""
    samples = [dataset[i] for i in range(len(dataset))]
    if not samples:
        return Collected(
            np.zeros(
                (0, dataset.satellite_channels, dataset.tile_size, dataset.tile_size), np.float32
            ),
            np.zeros((0, dataset.arrays.n_hours, dataset.arrays.n_features), np.float32),
            *(np.zeros((0, dataset.tile_size, dataset.tile_size), bool) for _ in range(2)),
            *(np.zeros(0, np.int64) for _ in range(3)),
        )

    def stack(key: str) -> Any:
        return torch.stack([s[key] for s in samples]).numpy()

    return Collected(
        stack("sat"),
        stack("aux"),
        stack("target_mask"),
        stack("hidden_mask"),
        stack("day_index"),
        stack("row"),
        stack("col"),
    )


@torch.no_grad()
def run_model(
    model: nn.Module,
    sat: F32,
    aux: F32,
    batch_size: int = 16,
    return_attention: bool = False,
    precision: Precision = "fp32",
) -> tuple[F32, list[F32]]:
    """Normalized predictions (N, H, W) and, when asked, attention per batch
    [(B, layers, heads, tokens, T), ...] (empty list otherwise). ``precision="bf16"`` runs
    under CPU bf16 autocast (the training precision on AMX/AVX512-BF16 CPUs)."""
    model.eval()
    preds: list[F32] = []
    attention: list[F32] = []
    for start in range(0, sat.shape[0], batch_size):
        s = torch.from_numpy(np.ascontiguousarray(sat[start : start + batch_size]))
        a = torch.from_numpy(np.ascontiguousarray(aux[start : start + batch_size]))
        with autocast_context(precision, "cpu"):
            pred, weights = model(s, a, return_attention=return_attention)
        preds.append(pred.float().numpy())
        if return_attention and weights is not None:
            attention.append(weights.float().numpy())
    if not preds:
        return np.zeros((0, *sat.shape[2:]), np.float32), attention
    return np.concatenate(preds), attention


@torch.no_grad()
def attention_entropy_ratio(
    model: nn.Module, sat: F32, aux: F32, batch_size: int = 16
) -> tuple[float, list[float]]:
    """Entropy ratio (mean entropy / ln T) of the model's attention over all samples, overall
    and per layer, batch by batch (the weights of a whole split are never held at once).
    NaN and [] for a model without attention."""
    total, per_layer, count = 0.0, np.zeros(0), 0
    for start in range(0, sat.shape[0], batch_size):
        s = torch.from_numpy(np.ascontiguousarray(sat[start : start + batch_size]))
        a = torch.from_numpy(np.ascontiguousarray(aux[start : start + batch_size]))
        _, weights = model(s, a, return_attention=True)
        if weights is None:
            return math.nan, []
        w = weights.float().numpy()  # (B, layers, heads, tokens, T)
        total += ablation.entropy_ratio(w) * w.shape[0]
        layers = np.asarray(ablation.entropy_ratio_per_layer(w)) * w.shape[0]
        per_layer = layers if per_layer.size == 0 else per_layer + layers
        count += w.shape[0]
    if count == 0:
        return math.nan, []
    return total / count, [float(v) for v in per_layer / count]


def assemble(
    tiles: NDArray[Any],
    collected: Collected,
    day_position: Mapping[int, int],
    shape: tuple[int, int],
    reduce: str = "mean",
) -> F64:
    """Domain fields (days, lat, lon) from per-sample tiles (N, H, W); overlapping tiles are
    averaged (``mean``) or OR-ed (``max``, for masks); cells no tile covers are NaN."""
    n_days = len(day_position)
    total = np.zeros((n_days, *shape))
    count = np.zeros((n_days, *shape))
    size = tiles.shape[-1]
    for tile, day, row, col in zip(
        tiles, collected.day_index, collected.row, collected.col, strict=True
    ):
        k = day_position[int(day)]
        window = (k, slice(row, row + size), slice(col, col + size))
        if reduce == "max":
            total[window] = np.maximum(total[window], tile)
        else:
            total[window] += tile
        count[window] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total if reduce == "max" else total / count
    return np.where(count > 0, out, np.nan)


@dataclass
class ModelRun:
    """A trained model with what it needs to predict in physical units."""

    kind: str
    model: nn.Module
    normalizers: Normalizers
    config: Config
    meta: dict[str, Any]

    @property
    def precision(self) -> Precision:
        """The inference precision: the run's ``training.precision`` resolved for the CPU."""
        return resolve_precision(self.config.training.precision, "cpu")

    def predict(self, sat: F32, aux: F32, batch_size: int) -> F32:
        """Predictions (N, H, W) in umol m-2."""
        pred, _ = run_model(self.model, sat, aux, batch_size, precision=self.precision)
        return np.asarray(self.normalizers.no2.inverse_transform(pred), dtype=np.float32)


def load_model_run(path: str | Path) -> ModelRun:
    """A ``ModelRun`` from a checkpoint written by ``training.train_model``."""
    model, config, normalizers, meta = load_checkpoint(path)
    return ModelRun(config.model.kind, model, normalizers, config, meta)


@dataclass
class EvaluationResult:
    """``metrics`` (the content of metrics.json) and the arrays the figures and NetCDF need."""

    metrics: dict[str, Any]
    times: NDArray[np.datetime64]
    lat: F64
    lon: F64
    cell_area: F64
    prediction: F64
    target: F64
    scored: NDArray[np.bool_]
    input_field: F64
    baselines: dict[str, F64] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    attention_days: list[dict[str, Any]] = field(default_factory=list)
    lead: int = 1


def _history_rows(meta: Mapping[str, Any], warmup_epochs: int) -> list[dict[str, Any]]:
    history = meta.get("history") or {}
    epochs = history.get("epoch", [])
    rows = []
    for i, epoch in enumerate(epochs):
        row: dict[str, Any] = {
            "epoch": int(epoch),
            "phase": "warmup" if epoch < warmup_epochs else "finetune",
        }
        for key in ("train_loss", "val_loss"):
            values = history.get(key, [])
            value = values[i] if i < len(values) else None
            row[key] = value if value is not None and math.isfinite(value) else None
        rows.append(row)
    return rows


def _scores(
    pred: F64,
    target: F64,
    mask: NDArray[np.bool_],
    area: F64,
    region: NDArray[np.int64],
    times: NDArray[np.datetime64],
    edges: list[float],
    quantiles: tuple[float, ...],
    references: Mapping[str, F64] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(global scores, breakdowns) of one prediction on ``mask``."""
    scores = compute_all(pred, target, mask, area, {k: v for k, v in (references or {}).items()})
    breakdowns = {
        "region": by_region(pred, target, mask, region, area),
        "season": by_season(pred, target, mask, times, area),
        "pollution": by_pollution_level(pred, target, mask, edges, quantiles, area),
    }
    return scores, breakdowns


def _lightgbm_met(
    collected: Collected, day_position: Mapping[int, int], shape: tuple[int, int]
) -> tuple[F64, list[str]]:
    """Tile-mean meteorology per day (days, k) — or per cell (days, lat, lon, k) when the domain
    has several tiles: the overpass step of all 13 features plus 24-h means of the 9 met ones."""
    mean_idx = [FEATURES.index(name) for name in _MET_MEAN_FEATURES]
    vectors = np.concatenate(
        [collected.aux[:, -1, :], collected.aux[:, :, mean_idx].mean(axis=1)], axis=1
    )
    names = [f"{n}@overpass" for n in FEATURES] + [f"{n}_24h_mean" for n in _MET_MEAN_FEATURES]
    n_days = len(day_position)
    size = collected.sat.shape[-1]
    single_tile = size == shape[0] and size == shape[1]
    if single_tile:
        met = np.zeros((n_days, vectors.shape[1]))
        for vector, day in zip(vectors, collected.day_index, strict=True):
            met[day_position[int(day)]] = vector
        return met, names
    met = np.zeros((n_days, *shape, vectors.shape[1]))
    for vector, day, row, col in zip(
        vectors, collected.day_index, collected.row, collected.col, strict=True
    ):
        met[day_position[int(day)], row : row + size, col : col + size] = vector
    return met, names


def _positions(collected: Collected) -> tuple[dict[int, int], NDArray[np.int64]]:
    days = np.unique(collected.day_index)
    return {int(d): k for k, d in enumerate(days)}, days


def _input_field(
    arrays: CubeArrays,
    dataset: NO2TileDataset,
    collected: Collected,
    positions: Mapping[int, int],
    days: NDArray[np.int64],
) -> F64:
    """The model's satellite input in umol m-2 (days, lat, lon): NaN where hidden/missing."""
    lookup = dict(zip(dataset.day_indices.tolist(), dataset.input_indices.tolist(), strict=True))
    visible = assemble(collected.sat[:, 1], collected, positions, arrays.shape, reduce="max") > 0.5
    raw = arrays.no2[[lookup[int(d)] for d in days]].astype(np.float64)
    return np.where(visible, raw, np.nan)


def _tiles_of(field: F64, positions: Mapping[int, int], samples: Collected) -> F32:
    """Cut each sample's tile (N, H, W) out of a domain field (days, lat, lon)."""
    size = samples.sat.shape[-1]
    tiles = [
        field[positions[int(day)], row : row + size, col : col + size]
        for day, row, col in zip(samples.day_index, samples.row, samples.col, strict=True)
    ]
    return np.asarray(tiles, dtype=np.float32)


def _gap_pool(
    arrays: CubeArrays,
    day_indices: NDArray[np.int64],
    samples: Collected,
    limit: int,
    rng: np.random.Generator,
) -> NDArray[np.bool_]:
    """Real gap patterns (M, H, W) (True = no valid observation) of other (training) days, cut at
    the samples' tile positions; at most ``limit`` patterns, drawn at random."""
    size = samples.sat.shape[-1]
    origins = sorted({(int(r), int(c)) for r, c in zip(samples.row, samples.col, strict=True)})
    pairs = [(int(t), r, c) for t in day_indices for r, c in origins]
    if not pairs:
        return np.zeros((0, size, size), dtype=bool)
    chosen = rng.choice(len(pairs), min(limit, len(pairs)), replace=False)
    return np.stack(
        [
            ~np.isfinite(arrays.no2[t, r : r + size, c : c + size])
            for t, r, c in (pairs[i] for i in chosen)
        ]
    )


def _shuffle_tests(
    model_run: ModelRun,
    test: Collected,
    reference_rmse: float,
    score: Callable[[F32, Collected], float],
    batch_size: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """RMSE when the meteorology is permuted across samples, and when its hours are permuted."""
    out: dict[str, Any] = {}
    n = test.aux.shape[0]
    if n > 1:
        order = rng.permutation(n)
        while n > 1 and np.all(order == np.arange(n)):
            order = rng.permutation(n)
        rmse = score(model_run.predict(test.sat, test.aux[order], batch_size), test)
        out["samples"] = {
            "description": "meteorology of another test sample (permuted across samples)",
            "rmse": rmse,
            "rmse_change": relative_change(rmse, reference_rmse),
        }
    hours = rng.permutation(test.aux.shape[1])
    rmse = score(model_run.predict(test.sat, test.aux[:, hours], batch_size), test)
    out["hours"] = {
        "description": "hourly steps of the own day permuted (same permutation for all samples)",
        "rmse": rmse,
        "rmse_change": relative_change(rmse, reference_rmse),
    }
    return out


def _robustness(
    model_run: ModelRun,
    test: Collected,
    reference: float,
    gap_pool: NDArray[np.bool_],
    config: Config,
    score: Callable[[F32, Collected], float],
    climatology_rmse: float | None,
    batch_size: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Every perturbation of ``robustness.py`` on the same samples, judged against the seed;
    ``reference`` is the unperturbed RMSE of these samples."""
    norm = model_run.normalizers.no2
    rows: list[dict[str, Any]] = []

    def add(
        category: str,
        label: str,
        setting: Any,
        setting_label: str,
        sat: NDArray[Any],
        aux: NDArray[Any],
        **extra: Any,
    ) -> None:
        inputs = (np.asarray(sat, np.float32), np.asarray(aux, np.float32))
        rmse = score(model_run.predict(*inputs, batch_size), test)
        rows.append(
            {
                "category": category,
                "label": label,
                "setting": setting,
                "setting_label": setting_label,
                "rmse": rmse,
                "rmse_change": relative_change(rmse, reference),
                **extra,
            }
        )

    valid = robustness.input_valid(test.sat)
    for rate in config.evaluation.dropout_rates:
        hide = robustness.random_dropout(valid, rate, rng)
        add(
            "dropout_random",
            "satellite dropout (random cells)",
            rate,
            f"{100 * rate:.0f} %",
            robustness.hide_cells(test.sat, hide),
            test.aux,
            achieved_rate=rate,
        )
    for rate in config.evaluation.dropout_rates:
        if gap_pool.shape[0] == 0:
            break
        hide, achieved = robustness.cloud_dropout(valid, gap_pool, rate, rng)
        add(
            "dropout_cloud",
            "satellite dropout (cloud-shaped, borrowed gaps)",
            rate,
            f"{100 * rate:.0f} % (achieved {100 * achieved:.0f} %)",
            robustness.hide_cells(test.sat, hide),
            test.aux,
            achieved_rate=achieved,
        )
    for level in config.evaluation.noise_levels:
        noisy = robustness.add_noise(
            test.sat,
            level,
            rng,
            to_physical=lambda z: norm.inverse_transform(z),
            to_normalized=lambda x: norm.transform(x, clip=True),
        ).astype(np.float32)
        add(
            "noise",
            "multiplicative noise on the NO2 input",
            level,
            f"{100 * level:.0f} %",
            noisy,
            test.aux,
        )
    for group in FEATURE_GROUPS:
        add(
            "feature_group",
            "meteorological feature-group dropout (set to median)",
            group,
            group,
            test.sat,
            robustness.drop_feature_group(test.aux, group).astype(np.float32),
        )
    return {
        "reference_rmse": reference,
        "climatology_rmse": climatology_rmse,
        "n_samples": int(test.sat.shape[0]),
        "tests": robustness.judge(rows, climatology_rmse),
    }


def _attention_day(
    model_run: ModelRun,
    test: Collected,
    index: int,
    arrays: CubeArrays,
    cube: Any,
) -> dict[str, Any] | None:
    """Attention summary of test sample ``index`` with the wind at the overpass over its tile;
    None for a model without attention."""
    _, weights = run_model(
        model_run.model, test.sat[index : index + 1], test.aux[index : index + 1], 1, True
    )
    if not weights:
        return None
    stride = model_run.config.model.token_stride
    size = test.sat.shape[-1]
    h = w = size // stride
    steps = test.aux.shape[1]
    hours = (
        np.asarray(cube["hour"].values, dtype=np.float64)
        if "hour" in cube.coords
        else np.arange(-steps + 1, 1.0)
    )
    summary = summarise_attention(weights[0][0], (h, w), hours)
    row, col, day = int(test.row[index]), int(test.col[index]), int(test.day_index[index])
    lat = np.asarray(cube["lat"].values)[row : row + size]
    lon = np.asarray(cube["lon"].values)[col : col + size]
    token_lat, token_lon = token_centres(lat, lon, stride)
    met_lat = np.asarray(cube["met_lat"].values)
    met_lon = np.asarray(cube["met_lon"].values)
    margin = 0.5 * float(abs(met_lat[1] - met_lat[0])) if met_lat.size > 1 else 0.0
    in_lat = np.flatnonzero((met_lat >= lat[0] - margin) & (met_lat <= lat[-1] + margin))
    in_lon = np.flatnonzero((met_lon >= lon[0] - margin) & (met_lon <= lon[-1] + margin))
    u = np.asarray(
        cube["met_u10"].isel(time=day, hour=-1, met_lat=in_lat, met_lon=in_lon).values,
        dtype=np.float64,
    )
    v = np.asarray(
        cube["met_v10"].isel(time=day, hour=-1, met_lat=in_lat, met_lon=in_lon).values,
        dtype=np.float64,
    )
    return {
        "date": str(arrays.times[day]),
        "hours": hours,
        "argmax_hour": summary.argmax_hour,
        "entropy_ratio": summary.entropy_ratio,
        "mean_weight": summary.mean_weight,
        "lat": token_lat,
        "lon": token_lon,
        "wind_u": u,
        "wind_v": v,
        "wind_lat": met_lat[in_lat],
        "wind_lon": met_lon[in_lon],
    }


def _summary(
    model_name: str,
    model_scores: Mapping[str, Any],
    model_breakdowns: Mapping[str, Any],
    baselines: Mapping[str, Any],
) -> dict[str, Any]:
    """Headline table rows, best model, and plain statements of where the model does not win."""
    keys = (
        "rmse",
        "mae",
        "bias",
        "r2",
        "spatial_correlation",
        "skill_vs_persistence",
        "skill_vs_climatology",
        "n_valid",
    )
    table: list[dict[str, Any]] = [{"name": model_name, **{k: model_scores.get(k) for k in keys}}]
    table += [
        {"name": name, **{k: b["global"].get(k) for k in keys}} for name, b in baselines.items()
    ]
    finite = [row for row in table if row["rmse"] is not None and math.isfinite(row["rmse"])]
    best = min(finite, key=lambda row: row["rmse"])["name"] if finite else None
    not_winning = []
    for name, b in baselines.items():
        if b["global"]["rmse"] <= model_scores["rmse"]:
            not_winning.append(
                f"globally, {name} has a lower or equal RMSE "
                f"({b['global']['rmse']:.2f} vs {model_scores['rmse']:.2f})"
            )
    for key, label in (("region", "region"), ("season", "season")):
        for category, scores in model_breakdowns[key].items():
            if not scores["n_valid"]:
                continue
            better = [
                f"{name} ({b['breakdowns'][key][category]['rmse']:.2f})"
                for name, b in baselines.items()
                if b["breakdowns"][key][category]["rmse"] < scores["rmse"]
            ]
            if better:
                not_winning.append(
                    f"{label} '{category}': model RMSE {scores['rmse']:.2f} is beaten by "
                    + ", ".join(better)
                )
    for category, scores in model_breakdowns["pollution"]["bins"].items():
        if not scores["n_valid"]:
            continue
        better = [
            f"{name} ({b['breakdowns']['pollution']['bins'][category]['rmse']:.2f})"
            for name, b in baselines.items()
            if b["breakdowns"]["pollution"]["bins"][category]["rmse"] < scores["rmse"]
        ]
        if better:
            not_winning.append(
                f"pollution level '{category}': model RMSE {scores['rmse']:.2f} is beaten by "
                + ", ".join(better)
            )
    return {"table": table, "best_rmse": best, "not_winning": not_winning}


def evaluate_run(
    checkpoints: Mapping[str, str | Path],
    cube_path: str | Path,
    config: Config,
    log: Log = print,
) -> EvaluationResult:
    """Evaluate the cross-modal model of ``checkpoints["cross_modal"]`` and every baseline.

    Args:
        checkpoints: model kind -> checkpoint path; ``cross_modal`` is required, ``concat`` and
            ``satellite_only`` are scored as neural baselines when present (and listed in
            ``config.evaluation.baselines``).
        cube_path: the Zarr cube the models were trained on.
        config: the run config (evaluation settings; data/model settings come from the
            checkpoint so that the test split is cut exactly as in training).
    """
    started = time.perf_counter()
    evaluation = config.evaluation
    rng = np.random.default_rng(config.seed)
    main_run = load_model_run(checkpoints["cross_modal"])
    run_config = main_run.config
    split: Split = main_run.meta["split"]
    cube = open_cube(cube_path)
    arrays = CubeArrays(cube, cache=run_config.data.cache_in_memory, path=cube_path)
    batch_size = run_config.data.batch_size
    lead = run_config.data.lead

    phases: dict[str, float] = {}
    current: list[Any] = [time.perf_counter(), None]

    def phase(name: str | None) -> None:
        """End the running phase (log its seconds) and start ``name`` (None: just end)."""
        now = time.perf_counter()
        if current[1] is not None:
            phases[current[1]] = now - current[0]
            log(f"    {current[1]}: {phases[current[1]]:.1f} s")
        current[:] = [now, name]
        if name is not None:
            log(f"  {name}...")

    phase("test split and model predictions")
    test_set = NO2TileDataset(
        arrays,
        main_run.normalizers,
        split.test,
        run_config.data,
        training=False,
        seed=run_config.seed,
    )
    test = collect(test_set)
    if test.sat.shape[0] == 0:
        from no2fusion.errors import NoDataError

        raise NoDataError("the test split has no sample with a valid target cell", cube_path)
    positions, days = _positions(test)
    shape = arrays.shape
    times = arrays.times[days]
    target = arrays.no2[days].astype(np.float64)  # (days, lat, lon) umol m-2
    scored_tiles = test.hidden_mask if lead == 0 else test.target_mask
    scored = assemble(scored_tiles.astype(np.float64), test, positions, shape, reduce="max") > 0.5
    main_tiles = main_run.predict(test.sat, test.aux, batch_size)  # (N, H, W) umol m-2
    prediction = assemble(main_tiles, test, positions, shape)
    input_field = _input_field(arrays, test_set, test, positions, days)

    phase(
        "baselines: climatology, persistence"
        + (", LightGBM" if "lightgbm" in evaluation.baselines else "")
    )
    train_idx = arrays.indices_of(split.train)
    train_field = arrays.no2[train_idx].astype(np.float64)
    climatology = MonthlyClimatology.fit(train_field, arrays.times[train_idx])
    clim_test = climatology.predict(times)
    baseline_fields: dict[str, F64] = {}
    if "persistence" in evaluation.baselines:
        baseline_fields["persistence"] = persistence(input_field, clim_test)
    if "climatology" in evaluation.baselines:
        baseline_fields["climatology"] = clim_test
    if "lightgbm" in evaluation.baselines:
        train_set = NO2TileDataset(
            arrays,
            main_run.normalizers,
            split.train,
            run_config.data,
            training=False,
            seed=run_config.seed,
        )
        train = collect(train_set)
        train_pos, train_days = _positions(train)
        train_met, met_names = _lightgbm_met(train, train_pos, shape)
        train_input = _input_field(arrays, train_set, train, train_pos, train_days)
        train_times = arrays.times[train_days]
        train_feats = CellFeatures.build(
            train_input,
            climatology.predict(train_times),
            arrays.region,
            train_times,
            train_met,
            met_names,
        )
        train_target = arrays.no2[train_days].astype(np.float64)
        booster = fit_lightgbm(
            train_feats,
            train_target,
            evaluation.lightgbm_rounds,
            evaluation.lightgbm_max_samples,
            config.seed,
            num_threads=evaluation.lightgbm_threads,
        )
        test_met, _ = _lightgbm_met(test, positions, shape)
        test_feats = CellFeatures.build(
            input_field, clim_test, arrays.region, times, test_met, met_names
        )
        baseline_fields["lightgbm"] = predict_lightgbm(booster, test_feats)
    neural: dict[str, ModelRun] = {}
    for kind in NEURAL_BASELINES:
        if kind in evaluation.baselines and kind in checkpoints:
            phase(f"neural baseline {kind}")
            neural[kind] = load_model_run(checkpoints[kind])
            baseline_fields[kind] = assemble(
                neural[kind].predict(test.sat, test.aux, batch_size), test, positions, shape
            )

    # identical cells for every row of the table
    common = scored & np.isfinite(target) & np.isfinite(prediction)
    for values in baseline_fields.values():
        common &= np.isfinite(values)
    area = arrays.cell_area
    region = arrays.region
    edges = pollution_bin_edges(train_field, evaluation.pollution_quantiles)
    quantiles = tuple(evaluation.pollution_quantiles)
    references: dict[str, F64] = {
        k: baseline_fields[k] for k in ("persistence", "climatology") if k in baseline_fields
    }
    if "climatology" not in references:
        references["climatology"] = clim_test
    if "persistence" not in references:
        references["persistence"] = persistence(input_field, clim_test)
    model_scores, model_breakdowns = _scores(
        prediction, target, common, area, region, times, edges, quantiles, references
    )
    baselines: dict[str, Any] = {}
    for name, values in baseline_fields.items():
        scores, breakdowns = _scores(
            values, target, common, area, region, times, edges, quantiles, references
        )
        baselines[name] = {"global": scores, "breakdowns": breakdowns}

    phase("ablation: attention entropy and shuffle tests")
    # attention, shuffle and robustness: a seeded subset of samples, scored on their own tiles
    subset_size = min(evaluation.robustness_samples, test.sat.shape[0])
    subset_index = np.sort(rng.choice(test.sat.shape[0], subset_size, replace=False))
    subset = test.subset(subset_index)
    ratio, per_layer = attention_entropy_ratio(main_run.model, subset.sat, subset.aux, batch_size)
    day_area = area

    def score(pred_tiles: F32, samples: Collected) -> float:
        mask = samples.hidden_mask if lead == 0 else samples.target_mask
        size = pred_tiles.shape[-1]
        errors_sq, weights = 0.0, 0.0
        for p, m, day, row, col in zip(
            pred_tiles, mask, samples.day_index, samples.row, samples.col, strict=True
        ):
            y = arrays.no2[int(day), row : row + size, col : col + size].astype(np.float64)
            a = day_area[row : row + size, col : col + size]
            ok = m & np.isfinite(y) & np.isfinite(p)
            errors_sq += float((a[ok] * (p[ok] - y[ok]) ** 2).sum())
            weights += float(a[ok].sum())
        return math.sqrt(errors_sq / weights) if weights > 0 else math.nan

    subset_rmse = score(main_tiles[subset_index], subset)
    shuffle = _shuffle_tests(main_run, subset, subset_rmse, score, batch_size, rng)
    baseline_rmse = {name: b["global"]["rmse"] for name, b in baselines.items()}
    verdicts = ablation.verdicts(
        model_scores["rmse"],
        baseline_rmse,
        ratio,
        shuffle.get("samples", {}).get("rmse_change"),
        evaluation.shuffle_threshold,
    )
    ablation_out = {
        "entropy_ratio": ratio,
        "entropy_ratio_per_layer": per_layer,
        "collapse_threshold": ablation.COLLAPSE_THRESHOLD,
        "collapsed": bool(ratio > ablation.COLLAPSE_THRESHOLD) if math.isfinite(ratio) else None,
        "shuffle_threshold": evaluation.shuffle_threshold,
        "shuffle_reference_rmse": subset_rmse,
        "shuffle": shuffle,
        "n_samples": int(subset.sat.shape[0]),
    }

    phase("robustness: dropout, noise, feature groups")
    gap_pool = _gap_pool(
        arrays, arrays.indices_of(split.train), subset, evaluation.robustness_samples, rng
    )
    climatology_rmse = None
    if "climatology" in baseline_fields:
        climatology_rmse = score(_tiles_of(clim_test, positions, subset), subset)
    robust = _robustness(
        main_run, subset, subset_rmse, gap_pool, config, score, climatology_rmse, batch_size, rng
    )

    phase("attention maps of chosen test days")
    counts = test.target_mask.reshape(test.target_mask.shape[0], -1).sum(axis=1)
    maps = [
        _attention_day(main_run, test, i, arrays, cube)
        for i in pick_days(counts, evaluation.attention_days)
    ]
    attention_days = [day for day in maps if day is not None]

    truth = None
    if "no2_truth" in cube.variables:
        truth_field = np.asarray(cube["no2_truth"].isel(time=days).values, dtype=np.float64)
        truth = compute_all(prediction, truth_field, common, area)

    histories = {main_run.kind: _history_rows(main_run.meta, run_config.training.warmup_epochs)}
    for kind, run in neural.items():
        histories[kind] = _history_rows(run.meta, run.config.training.warmup_epochs)

    metrics: dict[str, Any] = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "model": main_run.kind,
        "units": NO2_UNITS,
        "unit_factor_molec_cm2": UMOL_M2_TO_MOLEC_CM2,
        "global": model_scores,
        "split": {
            "lead": lead,
            "scored_cells": "hidden (reconstructed) target cells"
            if lead == 0
            else "valid target cells",
            "test_days": int(days.size),
            "first_day": str(times[0]),
            "last_day": str(times[-1]),
            "train_days": int(split.train.size),
            "val_days": int(split.val.size),
        },
        "breakdowns": model_breakdowns,
        "baselines": baselines,
        "ablation": ablation_out,
        "robustness": robust,
        "truth": truth,
        "summary": {},
        "checkpoints": {k: str(v) for k, v in checkpoints.items()},
        "evaluation_seconds": 0.0,
    }
    summary = _summary(main_run.kind, model_scores, model_breakdowns, baselines)
    summary["verdicts"] = verdicts + [
        {
            "criterion": "robustness: " + f"{r['label']} {r['setting_label']}",
            "passed": r["passed"],
            "statement": f"RMSE change {100 * r['rmse_change']:+.1f} % (seed: {r['expectation']})",
            "value": r["rmse_change"],
        }
        for r in robust["tests"]
        if r["passed"] is not None
    ]
    metrics["summary"] = summary
    phase(None)
    metrics["evaluation_seconds"] = time.perf_counter() - started
    metrics["evaluation_phases_seconds"] = phases
    return EvaluationResult(
        metrics=metrics,
        times=times,
        lat=np.asarray(cube["lat"].values, dtype=np.float64),
        lon=np.asarray(cube["lon"].values, dtype=np.float64),
        cell_area=area,
        prediction=prediction,
        target=target,
        scored=common,
        input_field=input_field,
        baselines=baseline_fields,
        histories=histories,
        attention_days=attention_days,
        lead=lead,
    )


def write_predictions(result: EvaluationResult, path: str | Path) -> Path:
    """Write the test-split fields as CF NetCDF (atomically): ``prediction``, ``target`` and
    ``valid_mask`` (the scored cells) on (time, lat, lon) in umol m-2, plus ``input`` (the
    model's satellite input), each baseline as ``baseline_<name>`` and ``cell_area`` (m2), so
    every score in metrics.json can be recomputed from this file alone."""
    import xarray as xr

    path = Path(path)
    dims = ("time", "lat", "lon")

    def field_attrs(long_name: str) -> dict[str, str]:
        return {"units": NO2_UNITS, "long_name": long_name}

    variables: dict[str, Any] = {
        "prediction": (
            dims,
            result.prediction.astype(np.float32),
            field_attrs("predicted tropospheric NO2 column"),
        ),
        "target": (
            dims,
            result.target.astype(np.float32),
            field_attrs("observed (QA-filtered L3) NO2 column"),
        ),
        "valid_mask": (
            dims,
            result.scored.astype(np.int8),
            {
                "long_name": "cell scored in metrics.json",
                "flag_values": np.array([0, 1], dtype=np.int8),
                "flag_meanings": "not_scored scored",
            },
        ),
        "input": (
            dims,
            result.input_field.astype(np.float32),
            field_attrs("satellite input (day d - lead)"),
        ),
        "cell_area": (
            ("lat", "lon"),
            result.cell_area,
            {"units": "m2", "long_name": "cell area on the sphere"},
        ),
    }
    for name, values in result.baselines.items():
        variables[f"baseline_{name}"] = (
            dims,
            values.astype(np.float32),
            field_attrs(f"{name} baseline"),
        )
    dataset = xr.Dataset(
        variables,
        coords={
            "time": (
                "time",
                result.times.astype("datetime64[ns]"),
                {"long_name": "target day (overpass)"},
            ),
            "lat": ("lat", result.lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", result.lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={
            "Conventions": "CF-1.10",
            "title": "no2fusion test-split predictions",
            "lead_days": result.lead,
            "rmse": float(result.metrics["global"]["rmse"]),
        },
    )
    encoding = {name: {"zlib": True, "complevel": 4} for name in variables}
    partial = path.with_name(path.name + ".partial")
    dataset.to_netcdf(partial, encoding=encoding)
    partial.replace(path)
    return path
