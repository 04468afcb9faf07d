"""The self-contained ``report.html`` of a run: tables, verdicts, figures (base64) and config.

Sits in ``report/``, the last stage: it reads nothing but what it is given — the typed
``metrics.json`` (``evaluation.results.Metrics``; schema in docs/evaluation.md), the figure PNGs
and the resolved config text — and renders ``templates/report.html.j2`` with jinja2
(autoescaped, strict: an attribute the template uses that the metrics lack is an error, never a
blank cell). The page needs no network and no other file: every image is embedded as a data URI.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from no2fusion.evaluation.results import Metrics
from no2fusion.files import atomic_path

TEMPLATES = Path(__file__).parent / "templates"

# Figure file name -> caption, in page order.
FIGURE_CAPTIONS: dict[str, str] = {
    "baseline_comparison.png": "The model and every baseline on the identical test cells.",
    "predictions_vs_actual.png": (
        "Predicted vs observed, test split: 2-D density of all valid cells (log colour)."
    ),
    "spatial_comparison.png": (
        "One test day: input (day d − lead), observation, prediction and error."
    ),
    "breakdown_region_season.png": "RMSE by region class and by season, model and baselines.",
    "breakdown_pollution.png": (
        "RMSE by pollution level (bins from quantiles of the training targets)."
    ),
    "robustness_curves.png": (
        "RMSE change under satellite dropout, noise and meteorological feature-group dropout."
    ),
    "attention_maps.png": (
        "Where and when the model looks: most-attended hour, entropy and mean weight per hour,"
        " with the wind."
    ),
    "training_curves.png": "Training and validation loss of the three neural models.",
}


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers for tables: ``digits`` significant decimals, '—' for None/NaN, ints with commas."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits}e}"
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: Any, digits: int = 1) -> str:
    """A fraction as a signed percentage ('+12.3 %'); '—' for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):+.{digits}f} %"


def embed_png(path: str | Path) -> str:
    """A data URI holding the PNG at ``path``."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def template_environment() -> jinja2.Environment:
    """The report's jinja2 environment (strict undefined, the ``fmt`` and ``pct`` filters)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["fmt"] = fmt
    environment.filters["pct"] = pct
    return environment


def render_report(
    metrics: Metrics,
    figures: Mapping[str, str | Path],
    config_text: str,
    title: str = "no2fusion run report",
) -> str:
    """The report page as one HTML string.

    Args:
        metrics: the content of metrics.json.
        figures: figure file name -> path of the PNG (names in ``FIGURE_CAPTIONS`` are
            captioned and ordered first; others follow).
        config_text: the resolved config as YAML.
    """
    ordered = [name for name in FIGURE_CAPTIONS if name in figures]
    ordered += [name for name in figures if name not in FIGURE_CAPTIONS]
    embedded = [
        {"name": name, "caption": FIGURE_CAPTIONS.get(name, name), "src": embed_png(figures[name])}
        for name in ordered
        if Path(figures[name]).exists()
    ]
    template = template_environment().get_template("report.html.j2")
    return template.render(
        title=title,
        m=metrics,
        figures=embedded,
        config_text=config_text,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(
    path: str | Path,
    metrics: Metrics,
    figures: Mapping[str, str | Path],
    config_text: str,
    title: str = "no2fusion run report",
) -> Path:
    """Render and write ``report.html`` atomically (temp file + rename); returns its path."""
    path = Path(path)
    html = render_report(metrics, figures, config_text, title)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path
