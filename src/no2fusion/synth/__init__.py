"""The simulated world (DESIGN §6), written in the real source formats.

Sits left of ``io`` in the flow: ``synth`` simulates emissions, meteorology, NO2 transport and a
TROPOMI-like satellite, and writes TROPOMI L2 NO2 files, ERA5 NetCDF and the truth, which the
pipeline then reads exactly like real files. Heavy modules are imported only when used.
"""

from __future__ import annotations

from no2fusion.synth.writers import L2Swath, write_era5_month, write_tropomi_l2

__all__ = ["L2Swath", "write_era5_month", "write_tropomi_l2"]
