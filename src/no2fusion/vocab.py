"""Canonical variable ids, units and valid ranges; per-source name maps.

Sits beside every layer: ``io/`` uses the source maps to rename and convert on the way in, and
every later layer speaks only the canonical ids and units below. Source names and source units
never travel past ``io/``.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- NO2 column units -------------------------------------------------------------------------
# The cube and every later layer carry NO2 columns in umol m-2 (typical values 5..300).
NO2_UNITS = "umol m-2"
MOL_M2_TO_UMOL_M2 = 1.0e6
# Avogadro / 1e4: mol m-2 -> molecules cm-2 (the product's own multiplication factor).
MOL_M2_TO_MOLEC_CM2 = 6.02214e19
UMOL_M2_TO_MOLEC_CM2 = MOL_M2_TO_MOLEC_CM2 / MOL_M2_TO_UMOL_M2  # 6.02214e13


@dataclass(frozen=True)
class Variable:
    """One canonical variable: id, units (UDUNITS-style string), plausible physical range.

    The range is what the readers accept (``io/checks.py``): wide enough for every real value
    on Earth (ERA5's extremes, TROPOMI's noisy columns), narrow enough that a unit mistake
    falls outside it (t2m in degC labelled K: ~ -40..45 < 180 K; sp in hPa labelled Pa:
    ~1000 < 30000 Pa; an NO2 column in molec cm-2 labelled mol m-2: ~1e21 umol m-2).
    """

    name: str
    units: str
    long_name: str
    valid_min: float
    valid_max: float


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in [
        Variable("no2", NO2_UNITS, "tropospheric NO2 vertical column", -200.0, 5000.0),
        Variable("no2_precision", NO2_UNITS, "NO2 column precision (1 sigma)", 0.0, 5000.0),
        Variable("qa_value", "1", "TROPOMI data quality value", 0.0, 1.0),
        Variable("latitude", "degrees_north", "pixel centre latitude", -90.0, 90.0),
        Variable("longitude", "degrees_east", "pixel centre longitude", -180.0, 180.0),
        Variable("u10", "m s-1", "10 m eastward wind", -80.0, 80.0),
        Variable("v10", "m s-1", "10 m northward wind", -80.0, 80.0),
        Variable("blh", "m", "boundary layer height", 0.0, 10000.0),
        Variable("t2m", "K", "2 m temperature", 180.0, 340.0),
        Variable("d2m", "K", "2 m dewpoint temperature", 170.0, 320.0),
        Variable("sp", "Pa", "surface pressure", 30000.0, 110000.0),
        Variable("tcc", "1", "total cloud cover fraction", 0.0, 1.0),
        Variable("rh", "%", "2 m relative humidity over water", 0.0, 100.0),
    ]
}

# Raw hourly meteorology carried into the cube, in this order.
MET_VARIABLES: tuple[str, ...] = ("u10", "v10", "blh", "t2m", "d2m", "sp", "tcc", "rh")

# The 13 model features, in the seed's order (DESIGN §2). Definitions live in pipeline/features.py.
FEATURES: tuple[str, ...] = (
    "u_norm",
    "v_norm",
    "wind_dir_sin",
    "wind_dir_cos",
    "wind_speed",
    "blh",
    "t2m",
    "relative_humidity",
    "surface_pressure",
    "day_sin",
    "day_cos",
    "hour_sin",
    "hour_cos",
)

# Feature groups for robustness tests (meteorological feature-group dropout, DESIGN §7).
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "wind": ("u_norm", "v_norm", "wind_dir_sin", "wind_dir_cos", "wind_speed"),
    "blh": ("blh",),
    "temperature": ("t2m",),
    "humidity": ("relative_humidity",),
    "pressure": ("surface_pressure",),
    "time": ("day_sin", "day_cos", "hour_sin", "hour_cos"),
}

# --- Region classes (from the emission map in the simulated world) ------------------------------
REGION_CLASSES: tuple[str, ...] = ("background", "rural", "suburban", "urban", "industrial")
REGION_CODES: dict[str, int] = {name: code for code, name in enumerate(REGION_CLASSES)}
REGION_LEGEND = " ".join(f"{code}={name}" for name, code in REGION_CODES.items())

# --- Source name maps ---------------------------------------------------------------------------
# TROPOMI L2 (PRODUCT group paths relative to the file root) -> canonical id.
TROPOMI_NAMES: dict[str, str] = {
    "PRODUCT/nitrogendioxide_tropospheric_column": "no2",
    "PRODUCT/nitrogendioxide_tropospheric_column_precision": "no2_precision",
    "PRODUCT/qa_value": "qa_value",
    "PRODUCT/latitude": "latitude",
    "PRODUCT/longitude": "longitude",
    "PRODUCT/SUPPORT_DATA/GEOLOCATIONS/latitude_bounds": "latitude_bounds",
    "PRODUCT/SUPPORT_DATA/GEOLOCATIONS/longitude_bounds": "longitude_bounds",
}

# ERA5 netCDF short name -> canonical id (identical today; kept explicit so a rename is one line).
ERA5_NAMES: dict[str, str] = {
    "u10": "u10",
    "v10": "v10",
    "blh": "blh",
    "t2m": "t2m",
    "d2m": "d2m",
    "sp": "sp",
    "tcc": "tcc",
}

# ERA5 unit strings as ECMWF writes them -> canonical units (FORMATS.md C.2). Any other unit
# string is an error naming the file and variable.
ERA5_UNIT_ALIASES: dict[str, str] = {
    "m s**-1": "m s-1",
    "m s-1": "m s-1",
    "m/s": "m s-1",
    "K": "K",
    "m": "m",
    "Pa": "Pa",
    "(0 - 1)": "1",
    "1": "1",
    "0-1": "1",
}

# CDS request names for the ERA5 variables we use (download client).
ERA5_REQUEST_NAMES: dict[str, str] = {
    "u10": "10m_u_component_of_wind",
    "v10": "10m_v_component_of_wind",
    "blh": "boundary_layer_height",
    "t2m": "2m_temperature",
    "d2m": "2m_dewpoint_temperature",
    "sp": "surface_pressure",
    "tcc": "total_cloud_cover",
}
