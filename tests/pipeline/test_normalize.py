"""RobustNormalizer: median/IQR statistics, clipping policy, exact inverse, persistence."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from no2fusion.errors import InputFileError, NoDataError
from no2fusion.pipeline.normalize import RobustNormalizer


def test_scalar_statistics_are_median_and_iqr() -> None:
    data = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan])
    norm = RobustNormalizer().fit(data)
    # numpy linear quantiles of 1..5: q25 = 2, median = 3, q75 = 4 (NaN ignored)
    assert norm.to_dict()["median"] == 3.0
    assert norm.to_dict()["iqr"] == 2.0
    np.testing.assert_allclose(norm.transform(np.array([3.0, 5.0, 1.0])), [0.0, 1.0, -1.0])


def test_per_feature_statistics_over_axes() -> None:
    rng = np.random.default_rng(0)
    data = np.empty((50, 6, 3))
    data[..., 0] = rng.uniform(0, 1, (50, 6))
    data[..., 1] = 1000.0 + 10.0 * rng.uniform(0, 1, (50, 6))
    data[..., 2] = 7.0  # constant: IQR 0 -> scale 1 (only shifted)
    norm = RobustNormalizer().fit(data, axis=(0, 1))
    stats = norm.to_dict()
    assert len(stats["median"]) == 3
    flat = data.reshape(-1, 3)
    np.testing.assert_allclose(stats["median"], np.median(flat, axis=0))
    q75, q25 = np.quantile(flat, [0.75, 0.25], axis=0)
    np.testing.assert_allclose(stats["iqr"][:2], (q75 - q25)[:2])
    assert stats["iqr"][2] == 1.0
    out = norm.transform(data)
    assert out.shape == data.shape
    np.testing.assert_allclose(out[..., 2], 0.0)
    # the normalized features have median 0 and IQR 1
    np.testing.assert_allclose(np.median(out.reshape(-1, 3)[:, :2], axis=0), 0.0, atol=1e-12)


def test_inputs_are_clipped_targets_are_not() -> None:
    norm = RobustNormalizer(clip_range=(-3.0, 3.0)).fit(np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    polluted = np.array([2.0 + 100.0 * 2.0])  # 100 IQRs above the median
    assert norm.transform(polluted)[0] == 3.0
    assert norm.transform(polluted, clip=False)[0] == pytest.approx(100.0)
    np.testing.assert_allclose(
        norm.inverse_transform(norm.transform(polluted, clip=False)), polluted
    )


def test_nan_stays_nan_and_dtype_is_kept() -> None:
    norm = RobustNormalizer().fit(np.arange(10.0))
    out = norm.transform(np.array([np.nan, 1.0], dtype=np.float32))
    assert out.dtype == np.float32
    assert np.isnan(out[0]) and np.isfinite(out[1])


def test_fit_without_finite_values_is_an_error() -> None:
    with pytest.raises(NoDataError):
        RobustNormalizer().fit(np.array([np.nan, np.inf]))
    with pytest.raises(RuntimeError, match="not fitted"):
        RobustNormalizer().transform(np.zeros(3))
    with pytest.raises(ValueError):
        RobustNormalizer(clip_range=(1.0, -1.0))


def test_save_load_round_trip(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(5, 2, (40, 4, 13))
    norm = RobustNormalizer(clip_range=(-5.0, 5.0)).fit(data, axis=(0, 1))
    path = tmp_path / "norm.json"
    norm.save(path)
    back = RobustNormalizer.load(path)
    assert back.clip_range == (-5.0, 5.0)
    np.testing.assert_array_equal(back.transform(data), norm.transform(data))
    assert (
        RobustNormalizer.from_dict(json.loads(json.dumps(norm.to_dict()))).to_dict()
        == norm.to_dict()
    )
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputFileError, match="bad.json"):
        RobustNormalizer.load(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text('{"median": 1.0}')
    with pytest.raises(InputFileError, match="partial.json"):
        RobustNormalizer.load(tmp_path / "partial.json")


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=6),
        elements=st.one_of(st.floats(-1e3, 1e3, width=32), st.just(np.nan), st.just(np.inf)),
    )
)
def test_per_feature_fit_one_feature_at_a_time_equals_one_reduction(data: np.ndarray) -> None:
    """Per-feature statistics are computed a feature at a time (memory); they must equal one
    NaN-ignoring reduction over all the other axes, all-NaN features included (IQR 1, median 0)."""
    values = np.where(np.isfinite(data), data, np.nan).astype(np.float64)
    if not np.isfinite(values).any():
        with pytest.raises(NoDataError):
            RobustNormalizer().fit(data, axis=tuple(range(data.ndim - 1)))
        return
    axes = tuple(range(data.ndim - 1))
    norm = RobustNormalizer().fit(data, axis=axes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features
        q25, median, q75 = np.nanquantile(values, [0.25, 0.5, 0.75], axis=axes)
    iqr = np.where(np.isfinite(q75 - q25) & (q75 - q25 > 0), q75 - q25, 1.0)
    np.testing.assert_array_equal(norm.median_, np.where(np.isfinite(median), median, 0.0))
    np.testing.assert_array_equal(norm.iqr_, iqr)


@settings(max_examples=60, deadline=None)
@given(
    fit_data=hnp.arrays(np.float64, st.integers(2, 40), elements=finite),
    x=hnp.arrays(np.float64, st.integers(1, 40), elements=finite),
)
def test_inverse_of_transform_is_identity_within_clip_range(
    fit_data: np.ndarray, x: np.ndarray
) -> None:
    norm = RobustNormalizer(clip_range=(-10.0, 10.0)).fit(fit_data)
    z = norm.transform(x, clip=False)
    inside = (z >= -10.0) & (z <= 10.0)
    back = norm.inverse_transform(norm.transform(x))  # clipped transform
    scale = max(1.0, float(np.max(np.abs(fit_data))))
    np.testing.assert_allclose(back[inside], x[inside], rtol=1e-9, atol=1e-9 * scale)
    # outside the clip range the clipped transform lands exactly on a bound
    assert np.all(np.isin(norm.transform(x)[~inside], [-10.0, 10.0]))


def test_same_statistics_compares_values_not_objects() -> None:
    """Two normalizers fitted on the same data apply the same transform (the feature cache is
    shared between them); other data or another clip range do not."""
    data = np.arange(40.0).reshape(10, 4)
    first = RobustNormalizer().fit(data, axis=0)
    second = RobustNormalizer().fit(data.copy(), axis=0)
    assert first is not second and first.same_statistics(second)
    assert not first.same_statistics(RobustNormalizer().fit(data + 1.0, axis=0))
    assert not first.same_statistics(RobustNormalizer((-5.0, 5.0)).fit(data, axis=0))
    assert not first.same_statistics(RobustNormalizer())  # not fitted
    np.testing.assert_array_equal(first.transform(data), (data - first.median_) / first.iqr_)
