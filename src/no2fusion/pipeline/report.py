"""The build report: what a cube build read, kept, rejected and skipped.

Sits in ``pipeline/`` beside ``build.py``, which fills it; the CLI prints its summary and writes
it as JSON next to the cube (``<out>.report.json``, e.g. ``cube.report.json`` for ``cube.zarr``)
and a short form into the cube's ``build_report`` attribute.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from no2fusion.files import atomic_path

PIXEL_COUNTS: tuple[str, ...] = (
    "pixels_total",
    "rejected_qa",
    "rejected_fill",
    "rejected_nan_corners",
    "kept",
)


@dataclass
class DayReport:
    """One overpass day.

    ``status``: ``written`` (complete in the cube), ``complete`` (already complete before this
    run; not re-read), ``skipped`` (no usable pixel; absent from the cube, see ``problems`` and
    ``rejected``), ``no_met`` (ERA5 does not cover its overpass window; see ``problems``),
    ``no_files`` (no L2 file for the day).
    ``coverage``: fraction of grid cells with a valid NO2 value (0..1).
    ``problems``: files that hold nothing usable here (cloudy, off-swath), one line each.
    ``rejected``: bad files (unreadable, malformed, implausible), one line each naming the file
    and the reason; any of them makes ``no2fusion build`` end with exit code 3.
    """

    day: str
    index: int
    status: str
    files: list[str] = field(default_factory=list)
    pixels: dict[str, int] = field(default_factory=dict)
    coverage: float | None = None
    overpass_time: str | None = None
    problems: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def report_path(cube_path: str | Path) -> Path:
    """``cube.zarr`` -> ``cube.report.json`` (same folder)."""
    path = Path(cube_path)
    return path.with_name(path.stem + ".report.json")


@dataclass
class BuildReport:
    """The whole build; ``to_dict`` is what goes to JSON."""

    sources: str
    out: str
    tropomi_files: list[str] = field(default_factory=list)
    era5_files: list[str] = field(default_factory=list)
    truth_file: str | None = None
    days: list[DayReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # bad files not tied to a day
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per build stage

    def count(self, status: str) -> int:
        return sum(1 for day in self.days if day.status == status)

    @property
    def rejected_files(self) -> list[str]:
        """Every bad input file of this run, one line each (file and reason)."""
        return [*self.rejected, *(line for day in self.days for line in day.rejected)]

    @property
    def cloudy_days(self) -> list[DayReport]:
        """Skipped days none of whose files was bad (cloudy, off-swath, all QA-rejected)."""
        return [d for d in self.days if d.status == "skipped" and not d.rejected]

    @property
    def pixels(self) -> dict[str, int]:
        """Pixel counts summed over the days read in this run."""
        total = dict.fromkeys(PIXEL_COUNTS, 0)
        for day in self.days:
            for key, value in day.pixels.items():
                total[key] = total.get(key, 0) + int(value)
        return total

    def summary(self) -> dict[str, Any]:
        covered = [d.coverage for d in self.days if d.coverage is not None]
        return {
            "days_total": len(self.days),
            "days_written": self.count("written"),
            "days_already_complete": self.count("complete"),
            "days_skipped": self.count("skipped"),
            "days_without_met": self.count("no_met"),
            "days_without_files": self.count("no_files"),
            "tropomi_files": len(self.tropomi_files),
            "era5_files": len(self.era5_files),
            "pixels": self.pixels,
            "mean_coverage": (sum(covered) / len(covered)) if covered else None,
            "problems": len(self.problems) + sum(len(d.problems) for d in self.days),
            "files_rejected": len(self.rejected_files),
            "seconds": round(self.seconds, 2),
            "stage_seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), **asdict(self)}

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically; return the path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    def lines(self) -> list[str]:
        """Human summary for the CLI."""
        s = self.summary()
        px = s["pixels"]
        coverage = f"{s['mean_coverage']:.1%}" if s["mean_coverage"] is not None else "n/a"
        out = [
            f"days: {s['days_written']} written, {s['days_already_complete']} already complete, "
            f"{s['days_skipped']} skipped, {s['days_without_met']} without ERA5, "
            f"{s['days_without_files']} without files "
            f"(of {s['days_total']})",
            f"pixels: {px['kept']} kept of {px['pixels_total']} read "
            f"(rejected: {px['rejected_qa']} qa, {px['rejected_fill']} fill, "
            f"{px['rejected_nan_corners']} NaN corners); mean coverage {coverage}",
        ]
        skipped = [d.day for d in self.cloudy_days]
        if skipped:
            shown = ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else "")
            out.append(f"days without a usable pixel (cloudy or off-swath): {shown}")
        out.extend(self.problems)
        return out
