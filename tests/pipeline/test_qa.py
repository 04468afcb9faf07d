"""The pipeline's QA stage: one function per file, counts that add up for the build report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from no2fusion.errors import NoDataError
from no2fusion.io.tropomi import SentinelDataLoader
from no2fusion.pipeline.qa import QACounts, apply_qa, qa_mask
from no2fusion.synth.writers import L2Swath, write_tropomi_l2


def swath(qa: np.ndarray, orbit: int) -> L2Swath:
    n_scan, n_ground = qa.shape
    lat = np.linspace(45, 46, n_scan + 1)
    lon = np.linspace(5, 6, n_ground + 1)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    lat_b = np.stack([la[:-1, :-1], la[:-1, 1:], la[1:, 1:], la[1:, :-1]], -1).astype(np.float32)
    lon_b = np.stack([lo[:-1, :-1], lo[:-1, 1:], lo[1:, 1:], lo[1:, :-1]], -1).astype(np.float32)
    no2 = np.full(qa.shape, 2e-5, np.float32)
    return L2Swath(
        lat_b.mean(-1),
        lon_b.mean(-1),
        lat_b,
        lon_b,
        no2,
        no2 / 5,
        qa,
        np.datetime64("2024-01-05T12:00:00", "ms") + np.arange(n_scan) * np.timedelta64(840, "ms"),
        orbit=orbit,
    )


def test_apply_qa_counts_add_up_across_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    totals = QACounts()
    loader = SentinelDataLoader()
    expected_kept = 0
    for orbit in (101, 102):
        qa = rng.choice([0.0, 0.5, 0.74, 0.75, 0.76, 1.0], size=(6, 7))
        data = swath(qa, orbit)
        data.no2[0, 0] = np.nan  # fill; counted only if its qa passes
        expected_kept += int((np.rint(qa * 100) > 75).sum() - (qa[0, 0] > 0.755))
        kept, counts = apply_qa(loader.load_tropomi_no2(write_tropomi_l2(data, tmp_path)), 0.75)
        assert counts.kept == kept.sizes["pixel"]
        assert (
            counts.rejected_qa + counts.rejected_fill + counts.rejected_nan_corners + counts.kept
            == counts.pixels_total
            == 42
        )
        totals = totals + counts
    assert totals.pixels_total == 84
    assert totals.kept == expected_kept
    assert totals.as_dict()["kept"] == expected_kept


def test_apply_qa_with_nothing_left_names_the_file(tmp_path: Path) -> None:
    path = write_tropomi_l2(swath(np.full((3, 3), 0.75), 7), tmp_path)
    with pytest.raises(NoDataError, match="no pixel passes the QA filter") as err:
        apply_qa(SentinelDataLoader().load_tropomi_no2(path), 0.75)
    assert str(path) in str(err.value)


def test_qa_mask_threshold_is_strict() -> None:
    assert qa_mask(np.array([0.5, 0.51]), 0.5).tolist() == [False, True]
    assert qa_mask(np.array([1.0, 0.99]), 0.99).tolist() == [True, False]
