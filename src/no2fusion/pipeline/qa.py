"""The pipeline's QA stage: keep only pixels with good quality, and account for the rest.

Sits first in ``pipeline/`` (DESIGN §5: the QA filter runs before anything else touches the
values), between the L2 reader (``io/tropomi.py``) and the regridder (``regrid.py``).

The filter itself (``qa_mask``, ``filter_pixels``) lives in ``io/l2_filter.py`` next to the
reader, because it depends on the product's raw ``qa_value`` encoding (integers 0..100 with
scale 0.01, FORMATS.md A.5) and because the seed's ``SentinelDataLoader.apply_filtering`` must
use it while ``io/`` may not import ``pipeline/`` (DESIGN §3 layering). This module is the
stage the build calls: one function per file (``load_and_filter``, which the build runs in
a helper process, ``io/isolated.py``), and rejection counts that add up across files for the
build report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import xarray as xr

from no2fusion.grid import BBox
from no2fusion.io.l2_filter import filter_pixels, qa_mask
from no2fusion.io.tropomi import SentinelDataLoader

__all__ = ["QACounts", "apply_qa", "load_and_filter", "qa_mask"]


@dataclass(frozen=True)
class QACounts:
    """Pixel counts of one QA-filter run (or the sum of several).

    ``pixels_total = rejected_qa + rejected_fill + rejected_nan_corners + kept``; rejections are
    counted in that order (a pixel failing qa is not also counted as fill).
    """

    pixels_total: int = 0
    rejected_qa: int = 0
    rejected_fill: int = 0
    rejected_nan_corners: int = 0
    kept: int = 0

    @classmethod
    def from_attrs(cls, attrs: dict[str, object]) -> QACounts:
        """Counts from the attrs ``filter_pixels`` writes on its result."""
        return cls(**{f.name: int(attrs[f.name]) for f in fields(cls)})  # type: ignore[call-overload]

    def __add__(self, other: QACounts) -> QACounts:
        return QACounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def apply_qa(data: xr.Dataset, threshold: float) -> tuple[xr.Dataset, QACounts]:
    """Run the QA filter on one reader dataset.

    Args:
        data: ``SentinelDataLoader.load_tropomi_no2`` output, dims (scanline, ground_pixel,
            corner), NO2 in umol m-2.
        threshold: keep ``qa_value > threshold`` (compared on the raw 0..100 integer scale).

    Returns:
        (the 1-D ``pixel`` dataset of kept pixels, its ``QACounts``).

    Raises:
        NoDataError: every pixel fails; the message names the file.
    """
    kept = filter_pixels(data, threshold)
    return kept, QACounts.from_attrs(kept.attrs)


def load_and_filter(path: str | Path, bbox: BBox, threshold: float) -> xr.Dataset:
    """One L2 file, cropped to the scanlines that can touch ``bbox``, QA-filtered: the 1-D
    ``pixel`` dataset of ``filter_pixels`` (rejection counts in its attrs).

    Raises:
        InputFileError: the file is unreadable or malformed (named with the reason).
        NoDataError: no pixel touches ``bbox``, or none passes the filter.
    """
    data = SentinelDataLoader(threshold).load_tropomi_no2(path, bbox=bbox)
    return filter_pixels(data, threshold)
