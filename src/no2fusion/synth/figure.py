"""One-day picture of the simulated world, drawn from the files it wrote.

Sits beside ``synth.world`` (it reads only the written files: truth, one L2 file, one ERA5
month, so it also shows that they round-trip): truth at the overpass, the observation with its
cloud gaps (pixels with qa_value <= 0.75 greyed out), and the 10 m wind at the overpass hour.
Used for ``docs/figures/synth_day.png`` and ``no2fusion synth --figure``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

QA_THRESHOLD_RAW = 75  # keep raw qa_value > 75 (0.75)


def _pick_day(truth_path: Path, tropomi: list[Path], day: int | None) -> int:
    """The requested day, or the first one whose valid fraction is between 35 % and 75 %."""
    import netCDF4

    if day is not None:
        return day
    for index, path in enumerate(tropomi[: min(len(tropomi), 60)]):
        with netCDF4.Dataset(path) as ds:
            qa = ds["PRODUCT/qa_value"]
            qa.set_auto_maskandscale(False)
            fraction = float((qa[0] > QA_THRESHOLD_RAW).mean())
        if 0.35 <= fraction <= 0.75:
            return index
    return 0


def draw_synth_day(world_dir: Path, out_png: Path, day: int | None = None) -> Path:
    """Draw truth / observation / wind for one day of ``world_dir`` into ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import netCDF4
    from matplotlib.collections import PolyCollection

    world_dir = Path(world_dir)
    tropomi = sorted((world_dir / "tropomi").glob("S5P_*_L2__NO2____*.nc"))
    index = _pick_day(world_dir / "truth" / "truth.nc", tropomi, day)
    with netCDF4.Dataset(world_dir / "truth" / "truth.nc") as ds:
        truth = np.asarray(ds["no2_truth"][index])
        lat = np.asarray(ds["lat"][:])
        lon = np.asarray(ds["lon"][:])
        overpass_ms = int(ds["overpass_time"][index])
    overpass = np.datetime64(overpass_ms, "ms")
    with netCDF4.Dataset(tropomi[index]) as ds:
        product = ds["PRODUCT"]
        no2 = np.ma.filled(product["nitrogendioxide_tropospheric_column"][0], np.nan) * 1e6
        qa_var = product["qa_value"]
        qa_var.set_auto_maskandscale(False)
        qa_raw = np.asarray(qa_var[0])
        geo = product["SUPPORT_DATA/GEOLOCATIONS"]
        lat_b = np.asarray(geo["latitude_bounds"][0])
        lon_b = np.asarray(geo["longitude_bounds"][0])
    month = str(overpass.astype("datetime64[M]"))
    with netCDF4.Dataset(world_dir / "era5" / f"era5_single_levels_{month}.nc") as ds:
        seconds = np.asarray(ds["valid_time"][:])
        hour = int(np.argmin(np.abs(seconds - overpass.astype("datetime64[s]").astype(np.int64))))
        met_lat = np.asarray(ds["latitude"][:])
        met_lon = np.asarray(ds["longitude"][:])
        u10 = np.asarray(ds["u10"][hour])
        v10 = np.asarray(ds["v10"][hour])

    extent = (lon[0] - 0.05, lon[-1] + 0.05, lat[0] - 0.05, lat[-1] + 0.05)
    vmax = float(np.nanpercentile(truth, 99))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    mesh = axes[0].pcolormesh(lon, lat, truth, vmin=0, vmax=vmax, cmap="viridis", shading="nearest")
    axes[0].set_title(f"truth at overpass {str(overpass)[:16]} UTC")

    inside = (
        (lon_b.max(-1) > extent[0])
        & (lon_b.min(-1) < extent[1])
        & (lat_b.max(-1) > extent[2])
        & (lat_b.min(-1) < extent[3])
    )
    good = inside & (qa_raw > QA_THRESHOLD_RAW) & np.isfinite(no2)
    bad = inside & ~good
    polys_good = np.stack([lon_b[good], lat_b[good]], axis=-1)  # (n, 4 corners, 2)
    polys_bad = np.stack([lon_b[bad], lat_b[bad]], axis=-1)
    axes[1].add_collection(PolyCollection(list(polys_bad), facecolor="0.82", edgecolor="none"))
    collection = PolyCollection(list(polys_good), array=no2[good], cmap="viridis", edgecolor="none")
    collection.set_clim(0, vmax)
    axes[1].add_collection(collection)
    axes[1].set_title(
        f"L2 pixels, qa_value > 0.75 (grey: cloudy/failed, {bad.sum() / max(inside.sum(), 1):.0%})"
    )

    speed = np.hypot(u10, v10)
    wind_mesh = axes[2].pcolormesh(met_lon, met_lat, speed, cmap="Blues", shading="nearest")
    step = max(1, met_lon.size // 12)  # about 12 arrows across
    axes[2].quiver(
        met_lon[::step],
        met_lat[::step],
        u10[::step, ::step],
        v10[::step, ::step],
        scale=120,
        width=0.005,
    )
    fig.colorbar(wind_mesh, ax=axes[2], label="10 m wind speed (m s-1)", shrink=0.9)
    axes[2].contour(
        lon, lat, truth, levels=[np.nanpercentile(truth, 90)], colors="crimson", linewidths=1
    )
    axes[2].set_title("ERA5 10 m wind at the overpass hour\n(red: truth 90th percentile)")
    for ax in axes:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_aspect(1 / np.cos(np.deg2rad(lat.mean())))
        ax.set_xlabel("longitude (deg E)")
    axes[0].set_ylabel("latitude (deg N)")
    fig.colorbar(mesh, ax=axes[:2], label="NO2 column (umol m-2)", shrink=0.9)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
