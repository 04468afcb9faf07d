"""Blocked time split: no day in two splits, buffers respected, every season in test, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from no2fusion.config import SplitConfig
from no2fusion.data.splits import SEASONS, blocked_split, season_of
from no2fusion.errors import NoDataError


def _days(n: int, start: str = "2021-01-01") -> np.ndarray:
    return np.datetime64(start, "D") + np.arange(n)


def _assert_blocked(split, days: np.ndarray, buffer_days: int) -> None:  # type: ignore[no-untyped-def]
    labelled = {name: set(split.days(name).tolist()) for name in ("train", "val", "test")}
    labelled["buffer"] = set(split.buffer.tolist())
    names = list(labelled)
    for a in range(len(names)):  # pairwise disjoint
        for b in range(a + 1, len(names)):
            assert not labelled[names[a]] & labelled[names[b]], (names[a], names[b])
    assert set().union(*labelled.values()) == set(days.tolist())  # every day accounted for
    # any two days of different splits are more than buffer_days apart
    pairs = sorted((day, name) for name in ("train", "val", "test") for day in labelled[name])
    for (d1, n1), (d2, n2) in zip(pairs, pairs[1:], strict=False):
        if n1 != n2:
            assert (d2 - d1).days > buffer_days, (d1, n1, d2, n2)


def test_season_of_months() -> None:
    days = np.array(
        [
            "2021-12-31",
            "2022-01-15",
            "2022-02-28",
            "2022-03-01",
            "2022-06-01",
            "2022-08-31",
            "2022-09-01",
            "2022-11-30",
        ],
        dtype="datetime64[D]",
    )
    assert season_of(days).tolist() == ["DJF", "DJF", "DJF", "MAM", "JJA", "JJA", "SON", "SON"]


def test_default_split_of_1000_days() -> None:
    days = _days(1000)
    config = SplitConfig()  # 28-day blocks, 2 buffer days, 15 % val, 15 % test
    split = blocked_split(days, config)
    _assert_blocked(split, days, config.buffer_days)
    assert set(season_of(split.test)) == set(SEASONS)
    n_blocks = -(-1000 // 28)
    assert round(0.15 * n_blocks) * 28 - 2 * 28 <= split.test.size <= round(0.15 * n_blocks) * 28
    assert split.train.size > 0.6 * 1000
    # test days come in contiguous runs (blocks), not scattered days
    runs = np.split(split.test, np.flatnonzero(np.diff(split.test).astype(int) > 1) + 1)
    assert min(run.size for run in runs) >= 28 - 2 * config.buffer_days


def test_split_is_seeded() -> None:
    days = _days(400)
    a = blocked_split(days, SplitConfig(seed=1))
    b = blocked_split(days, SplitConfig(seed=1))
    c = blocked_split(days, SplitConfig(seed=2))
    assert np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val)
    assert not (np.array_equal(a.test, c.test) and np.array_equal(a.val, c.val))


def test_missing_days_are_in_no_split() -> None:
    days = np.delete(_days(365), [10, 11, 200])
    split = blocked_split(days, SplitConfig(block_days=14, buffer_days=1))
    _assert_blocked(split, days, 1)


def test_round_trip_through_plain_dict() -> None:
    split = blocked_split(_days(200), SplitConfig(block_days=10))
    again = type(split).from_dict(split.to_dict())
    for name in ("train", "val", "test", "buffer"):
        assert np.array_equal(again.days(name), split.days(name))


@pytest.mark.parametrize("n_days", [1, 20, 56])
def test_too_few_days_is_one_clear_error(n_days: int) -> None:
    # 56 days of 28-day blocks = 2 blocks, but test + val + train need 3
    with pytest.raises(NoDataError, match="too few days for the blocked split"):
        blocked_split(_days(n_days), SplitConfig())


@settings(max_examples=40, deadline=None)
@given(
    n_days=st.integers(40, 800),
    block=st.integers(3, 30),
    buffer=st.integers(0, 3),
    seed=st.integers(0, 2**16),
    start=st.integers(0, 364),
)
def test_blocking_properties(n_days: int, block: int, buffer: int, seed: int, start: int) -> None:
    days = np.datetime64("2021-01-01", "D") + start + np.arange(n_days)
    config = SplitConfig(block_days=block, buffer_days=buffer, seed=seed)
    try:
        split = blocked_split(days, config)
    except NoDataError:
        return  # too few blocks for these settings: an error, never a leaky split
    _assert_blocked(split, days, buffer)
    if n_days >= 365 and block <= 30:  # every season owns >= 90 days, so >= 1 whole block
        assert set(season_of(split.test)) == set(SEASONS)
