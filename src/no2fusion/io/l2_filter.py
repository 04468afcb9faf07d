"""The QA filter of TROPOMI L2 NO2 pixels: ``qa_value`` on the product's raw integer scale,
then finite values and corners.

Sits in ``io/`` beside the reader (``tropomi.py``, whose ``SentinelDataLoader.apply_filtering``
is this filter, and which re-exports its names): it depends on the product's raw ``qa_value``
encoding (integers 0..100 with scale 0.01, FORMATS.md A.5), and ``pipeline/qa.py``, the
pipeline stage, wraps it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.errors import NoDataError

QA_STEPS = 100  # qa_value is stored as raw integers 0..100 with scale 0.01 (FORMATS A.5)
PIXEL_VARS = ("no2", "no2_precision", "qa_value", "latitude", "longitude")


def qa_mask(qa_value: NDArray[np.floating], threshold: float) -> NDArray[np.bool_]:
    """True where a pixel passes the QA filter ``qa_value > threshold``.

    The comparison is done on the raw integer scale of the product (qa_value = raw × 0.01,
    FORMATS A.5): keep ``raw > floor(100 · threshold)`` (the tiny epsilon absorbs float error
    such as 0.29 · 100 = 28.999…), so raw 75 fails at 0.75 and raw 76 passes, with no float
    rounding surprise, and a threshold between two raw steps (0.735) keeps the raw value just
    above it (74). NaN (fill) fails.
    """
    raw = np.rint(np.asarray(qa_value, dtype=np.float64) * QA_STEPS)
    cut = math.floor(threshold * QA_STEPS + 1e-6)  # largest raw value that is NOT > threshold
    with np.errstate(invalid="ignore"):
        return np.asarray(raw > cut)


def filter_pixels(data: xr.Dataset, threshold: float) -> xr.Dataset:
    """The QA filter: ``(scanline, ground_pixel[, corner])`` dataset -> 1-D ``pixel`` dataset.

    A pixel is kept when, in this order of rejection, its qa passes ``qa_mask``, its ``no2``
    and ``no2_precision`` are finite, and its 8 corner coordinates are finite. The returned
    dataset has every per-pixel variable along ``pixel`` (corners as ``(pixel, corner)``;
    ``time``/``source_file`` broadcast from their scanline) plus ``scanline`` and
    ``ground_pixel`` index coordinates, and attrs ``pixels_total``, ``rejected_qa``,
    ``rejected_fill``, ``rejected_nan_corners``, ``kept`` and ``qa_threshold``.

    Raises:
        NoDataError: no pixel survives; the message names the file(s).
    """
    n_scan, n_ground = data.sizes["scanline"], data.sizes["ground_pixel"]
    n_pix = n_scan * n_ground

    def flat(name: str) -> NDArray[Any]:
        values = data[name].transpose("scanline", "ground_pixel", ...).values
        return values.reshape(n_pix, *values.shape[2:])  # (scanline*ground_pixel[, corner])

    lat_b, lon_b = flat("latitude_bounds"), flat("longitude_bounds")
    qa_ok = qa_mask(flat("qa_value"), threshold)
    finite_values = np.isfinite(flat("no2")) & np.isfinite(flat("no2_precision"))
    corners_ok = np.isfinite(lat_b).all(axis=1) & np.isfinite(lon_b).all(axis=1)
    keep = qa_ok & finite_values & corners_ok
    counts = {
        "pixels_total": int(n_pix),
        "rejected_qa": int((~qa_ok).sum()),
        "rejected_fill": int((qa_ok & ~finite_values).sum()),
        "rejected_nan_corners": int((qa_ok & finite_values & ~corners_ok).sum()),
        "kept": int(keep.sum()),
    }
    if counts["kept"] == 0:
        files = sorted({str(f) for f in np.asarray(data["source_file"].values).ravel()})
        where = files[0] if len(files) == 1 else ", ".join(files)
        raise NoDataError(
            f"no pixel passes the QA filter (qa_value > {threshold}, finite NO2 and corners): "
            f"{counts['rejected_qa']} of {counts['pixels_total']} fail qa, "
            f"{counts['rejected_fill']} are fill, "
            f"{counts['rejected_nan_corners']} have NaN corners",
            where,
        )
    index = np.flatnonzero(keep)  # (kept,) into the flattened scanline-major pixels
    row, col = np.divmod(index, n_ground)
    out: dict[str, Any] = {}
    for name in PIXEL_VARS:
        out[name] = ("pixel", flat(name)[index], data[name].attrs)
    out["latitude_bounds"] = (("pixel", "corner"), lat_b[index], data["latitude_bounds"].attrs)
    out["longitude_bounds"] = (("pixel", "corner"), lon_b[index], data["longitude_bounds"].attrs)
    for name in ("time", "source_file"):
        out[name] = ("pixel", data[name].values[row], data[name].attrs)
    scanline = data["scanline"].values[row] if "scanline" in data.coords else row
    kept = xr.Dataset(out, coords={"scanline": ("pixel", scanline), "ground_pixel": ("pixel", col)})
    kept.attrs = {**data.attrs, **counts, "qa_threshold": float(threshold)}
    return kept
