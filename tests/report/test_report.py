"""Figures are written as real PNGs; the HTML report is self-contained and tells the truth."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from no2fusion.evaluation.evaluate import EvaluationResult, write_predictions
from no2fusion.report.figures import write_figures
from no2fusion.report.html import fmt, pct, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory, fake_result: EvaluationResult) -> Path:
    out = tmp_path_factory.mktemp("report")
    figures = write_figures(fake_result, out)
    write_report(
        out / "report.html", fake_result.metrics, figures, "seed: 7\n<script>alert(1)</script>\n"
    )
    return out


def test_every_figure_is_a_png(report_dir: Path) -> None:
    for name in (
        "training_curves.png",
        "predictions_vs_actual.png",
        "spatial_comparison.png",
        "attention_maps.png",
        "breakdown_region_season.png",
        "breakdown_pollution.png",
        "robustness_curves.png",
        "baseline_comparison.png",
    ):
        data = (report_dir / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name


def test_report_is_self_contained_with_tables_and_honest_verdicts(
    report_dir: Path, fake_result: EvaluationResult
) -> None:
    html = (report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 8
    assert not re.search(r"""src=["'](?!data:)""", html), "every image must be embedded"
    for table in (
        "headline-table",
        "table-region",
        "table-season",
        "table-pollution",
        "table-ablation",
        "table-robustness",
    ):
        assert f'id="{table}"' in html
    rmse = fake_result.metrics.global_.rmse
    assert fmt(rmse, 2) in html
    # the fake model does not beat concat by 5 % and the shuffle does not hurt: both must say FAIL
    assert "does NOT beat plain concatenation" in html
    assert "the model barely uses the day&#39;s meteorology" in html
    assert html.count(">FAIL<") >= 2
    # config is shown escaped, never executed
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html


def test_formatters() -> None:
    assert fmt(float("nan")) == "—" and fmt(None) == "—" and fmt(1234) == "1,234"
    assert fmt(3.14159, 2) == "3.14" and fmt(1.5e14, 2) == "1.50e+14"
    assert pct(0.123) == "+12.3 %" and pct(float("nan")) == "—"


def test_predictions_netcdf_roundtrip(tmp_path: Path, fake_result: EvaluationResult) -> None:
    import xarray as xr

    path = write_predictions(fake_result, tmp_path / "predictions.nc")
    with xr.open_dataset(path) as ds:
        assert ds["prediction"].dims == ("time", "lat", "lon")
        assert (
            ds["prediction"].attrs["units"] == "umol m-2" and ds.attrs["Conventions"] == "CF-1.10"
        )
        np.testing.assert_allclose(ds["target"].values, fake_result.target.astype(np.float32))
        assert int(ds["valid_mask"].sum()) == int(fake_result.scored.sum())


def test_report_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(
            "chromium is not installed: cannot check that report.html renders in a real browser"
        )
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1280,2400",
            (report_dir / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.std() > 0.05, "the screenshot is blank"
