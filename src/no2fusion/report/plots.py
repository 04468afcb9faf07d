"""Figures of a run: pure functions from arrays and typed scores to matplotlib ``Figure`` objects.

Sits in ``report/``, at the end of the flow: ``evaluation/`` computes the numbers (typed, see
``evaluation.results``), these functions draw them, ``html.py`` embeds them. Figures are built
with ``matplotlib.figure.Figure`` (no pyplot state, Agg canvas), so they are safe to make
anywhere and never open a window.
Fields are (lat, lon) or (time, lat, lon) in umol m-2 with ascending lat/lon centres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from numpy.typing import NDArray

from no2fusion.evaluation.attention import AttentionMap
from no2fusion.evaluation.results import RobustnessTest, Scores
from no2fusion.evaluation.runs import HistoryRow

Array = NDArray[np.float64]
NO2_LABEL = "NO$_2$ column [µmol m$^{-2}$]"
MODEL_COLOURS = {
    "cross_modal": "#1f77b4",
    "concat": "#ff7f0e",
    "satellite_only": "#2ca02c",
    "lightgbm": "#9467bd",
    "persistence": "#8c564b",
    "climatology": "#7f7f7f",
}


def save_figure(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` as PNG (Agg) and return the path."""
    path = Path(path)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def training_curves(histories: Mapping[str, Sequence[HistoryRow]]) -> Figure:
    """Train/val loss per epoch for each model (model name -> epochs); phase changes marked;
    missing values are skipped."""
    figure = Figure(figsize=(8, 4.2), layout="constrained")
    ax = figure.subplots()
    for name, rows in histories.items():
        colour = MODEL_COLOURS.get(name)
        for label, style, points in (
            ("train", "--", [(r.epoch, r.train_loss) for r in rows if r.train_loss is not None]),
            ("val", "-", [(r.epoch, r.val_loss) for r in rows if r.val_loss is not None]),
        ):
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, style, color=colour, label=f"{name} {label}", marker=".")
        for previous, row in zip(rows[:-1], rows[1:], strict=True):
            if row.phase != previous.phase:
                ax.axvline(row.epoch - 0.5, color=colour or "k", alpha=0.3, lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked loss (normalized units)")
    ax.set_yscale("log")
    ax.set_title("Training curves (vertical lines: warm-up → fine-tune)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8, ncol=2)
    return figure


def predictions_vs_actual(
    pred: Array, target: Array, valid: NDArray[np.bool_], scores: Scores
) -> Figure:
    """2-D density (log colour scale) of predicted vs observed values on valid cells, 1:1 line."""
    p, t = np.asarray(pred)[valid], np.asarray(target)[valid]
    figure = Figure(figsize=(5.6, 5), layout="constrained")
    ax = figure.subplots()
    if p.size:
        low, high = np.percentile(np.concatenate([p, t]), [0.1, 99.9])
        bins = np.linspace(low, high, 120)
        counts, xe, ye = np.histogram2d(t, p, bins=[bins, bins])
        counts = np.where(counts > 0, counts, np.nan)
        mesh = ax.pcolormesh(xe, ye, counts.T, norm=LogNorm(), cmap="viridis")
        figure.colorbar(mesh, ax=ax, label="cells per bin")
        ax.plot([low, high], [low, high], "k--", lw=1, label="1:1")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
    ax.set_xlabel(f"observed {NO2_LABEL}")
    ax.set_ylabel(f"predicted {NO2_LABEL}")
    ax.set_title(
        f"Test split: RMSE {scores.rmse:.2f}, R² {scores.r2:.3f}, n = {scores.n_valid:,}",
        fontsize=10,
    )
    return figure


def _extent(lat: Array, lon: Array) -> tuple[float, float, float, float]:
    dlat = (lat[-1] - lat[0]) / max(len(lat) - 1, 1)
    dlon = (lon[-1] - lon[0]) / max(len(lon) - 1, 1)
    return (lon[0] - dlon / 2, lon[-1] + dlon / 2, lat[0] - dlat / 2, lat[-1] + dlat / 2)


def spatial_comparison(
    input_field: Array, target: Array, pred: Array, lat: Array, lon: Array, title: str = ""
) -> Figure:
    """Four maps of one day: input (previous day), observed target, prediction, error."""
    figure = Figure(figsize=(15, 3.8), layout="constrained")
    axes = figure.subplots(1, 4)
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in (input_field, target, pred)])
    vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    error = pred - target
    limit = float(np.nanpercentile(np.abs(error), 99)) if np.isfinite(error).any() else 1.0
    extent = _extent(lat, lon)
    panels = [
        ("input (day d − lead)", input_field, "viridis", vmin, vmax),
        ("observed (day d)", target, "viridis", vmin, vmax),
        ("predicted", pred, "viridis", vmin, vmax),
        ("predicted − observed", error, "RdBu_r", -limit, limit),
    ]
    for ax, (name, values, cmap, low, high) in zip(axes, panels, strict=True):
        image = ax.imshow(values, origin="lower", extent=extent, cmap=cmap, vmin=low, vmax=high)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("lon [°E]")
        figure.colorbar(image, ax=ax, shrink=0.8, label="µmol m$^{-2}$")
    axes[0].set_ylabel("lat [°N]")
    figure.suptitle(title or "Spatial comparison (white = no valid observation)")
    return figure


def attention_maps(days: Sequence[AttentionMap]) -> Figure:
    """Per day: argmax-hour map and entropy map with wind arrows, and mean weight per hour."""
    rows = max(len(days), 1)
    figure = Figure(figsize=(15, 4.2 * rows), layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, 3, squeeze=False))
    for row, day in zip(axes, days, strict=False):
        extent = _extent(day.lat, day.lon)
        hours = np.asarray(day.hours)
        image = row[0].imshow(
            day.summary.argmax_hour,
            origin="lower",
            extent=extent,
            cmap="viridis",
            vmin=hours.min(),
            vmax=hours.max(),
        )
        figure.colorbar(image, ax=row[0], shrink=0.8, label="hour offset of max weight [h]")
        row[0].set_title(f"{day.date}: most-attended hour", fontsize=10)
        image = row[1].imshow(
            day.summary.entropy_ratio, origin="lower", extent=extent, cmap="magma", vmin=0, vmax=1
        )
        figure.colorbar(image, ax=row[1], shrink=0.8, label="entropy / ln T")
        row[1].set_title("attention entropy (1 = uniform)", fontsize=10)
        # at most ~12 arrows per axis so the maps stay readable
        step_lat = max(1, int(np.ceil(len(day.wind.lat) / 12)))
        step_lon = max(1, int(np.ceil(len(day.wind.lon) / 12)))
        lon2, lat2 = np.meshgrid(day.wind.lon[::step_lon], day.wind.lat[::step_lat])
        u = np.asarray(day.wind.u)[::step_lat, ::step_lon]
        v = np.asarray(day.wind.v)[::step_lat, ::step_lon]
        for ax in row[:2]:
            ax.quiver(lon2, lat2, u, v, color="white", edgecolor="k", linewidth=0.5)
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
        row[2].bar(hours, day.summary.mean_weight, color="#1f77b4")
        row[2].axhline(1.0 / len(hours), color="k", ls="--", lw=1, label="uniform 1/T")
        row[2].set_xlabel("hour offset from overpass [h]")
        row[2].set_ylabel("mean attention weight")
        row[2].legend(fontsize=8)
        row[2].set_title("mean weight per hour", fontsize=10)
    figure.suptitle("Cross-modal attention on test days (arrows: 10 m wind at overpass)")
    return figure


def _grouped_bars(
    ax: Any, data: Mapping[str, Mapping[str, Scores]], metric: str, title: str
) -> None:
    """Bars of ``metric`` (a ``Scores`` field) per category (x) for each model (colour);
    n_valid under each label."""
    models = list(data)
    first: Mapping[str, Scores] = next(iter(data.values()), {})
    categories = list(first)
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(categories))
    for i, name in enumerate(models):
        values = [getattr(data[name][c], metric) if c in data[name] else np.nan for c in categories]
        ax.bar(
            x + i * width - 0.4 + width / 2,
            values,
            width,
            label=name,
            color=MODEL_COLOURS.get(name),
        )
    ax.set_xticks(x, [f"{c}\n(n={first[c].n_valid:,})" for c in categories], fontsize=8)
    ax.set_ylabel(f"{metric.upper()} [µmol m$^{{-2}}$]")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if models:
        ax.legend(fontsize=7)


def breakdown_figure(
    region: Mapping[str, Mapping[str, Scores]],
    season: Mapping[str, Mapping[str, Scores]],
    metric: str = "rmse",
) -> Figure:
    """Region-class and season bars side by side (model name -> category -> scores)."""
    figure = Figure(figsize=(14, 4.2), layout="constrained")
    ax_region, ax_season = figure.subplots(1, 2, width_ratios=[1.2, 1])
    _grouped_bars(ax_region, region, metric, f"{metric.upper()} by region class")
    _grouped_bars(ax_season, season, metric, f"{metric.upper()} by season")
    return figure


def pollution_figure(levels: Mapping[str, Mapping[str, Scores]], metric: str = "rmse") -> Figure:
    """Bars per pollution level (bins of training-target quantiles) for each model."""
    figure = Figure(figsize=(9, 4), layout="constrained")
    _grouped_bars(
        figure.subplots(), levels, metric, f"{metric.upper()} by pollution level (observed)"
    )
    return figure


def robustness_curves(tests: Sequence[RobustnessTest]) -> Figure:
    """RMSE change (%) vs perturbation: dropout curves (random, cloud), noise, feature groups,
    with the seed's allowed change (``limit``) where it has one."""
    figure = Figure(figsize=(13, 4), layout="constrained")
    ax_curve, ax_bars = figure.subplots(1, 2, width_ratios=[1.1, 1])
    styles = {
        "dropout_random": ("o-", "random cell dropout"),
        "dropout_cloud": ("s-", "cloud-shaped dropout"),
        "noise": ("^-", "multiplicative noise"),
    }
    for category, (style, label) in styles.items():
        rows = [r for r in tests if r.category == category]
        if rows:
            x = [100 * float(r.setting) for r in rows]
            y = [100 * r.rmse_change for r in rows]
            ax_curve.plot(x, y, style, label=label)
    limits = sorted(
        {
            (100 * float(r.setting), 100 * r.limit)
            for r in tests
            if r.limit is not None and r.category != "feature_group"
        }
    )
    if limits:
        lx, ly = zip(*limits, strict=True)
        ax_curve.plot(lx, ly, "k:", label="seed's allowed increase")
    ax_curve.axhline(0, color="k", lw=0.8)
    ax_curve.set_xlabel("cells dropped / noise level [%]")
    ax_curve.set_ylabel("RMSE change [%]")
    ax_curve.set_title("Satellite-input perturbations")
    ax_curve.grid(alpha=0.3)
    ax_curve.legend(fontsize=8)
    groups = [r for r in tests if r.category == "feature_group"]
    ax_bars.bar(
        [str(r.setting) for r in groups],
        [100 * r.rmse_change for r in groups],
        color="#9467bd",
    )
    ax_bars.axhline(0, color="k", lw=0.8)
    ax_bars.set_ylabel("RMSE change [%]")
    ax_bars.set_title("Meteorological feature-group dropout (set to median)")
    ax_bars.grid(axis="y", alpha=0.3)
    return figure


def baseline_comparison(scores: Mapping[str, Scores]) -> Figure:
    """RMSE and spatial correlation of the model and every baseline on the same test cells."""
    names = list(scores)
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    ax_rmse, ax_corr = figure.subplots(1, 2)
    colours = [MODEL_COLOURS.get(n, "#17becf") for n in names]
    ax_rmse.bar(names, [scores[n].rmse for n in names], color=colours)
    ax_rmse.set_ylabel("RMSE [µmol m$^{-2}$]")
    ax_rmse.set_title("RMSE (lower is better)")
    ax_corr.bar(names, [scores[n].spatial_correlation for n in names], color=colours)
    ax_corr.set_ylabel("spatial correlation")
    ax_corr.set_title("Spatial correlation (higher is better)")
    for ax in (ax_rmse, ax_corr):
        ax.tick_params(axis="x", labelrotation=25, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    return figure
