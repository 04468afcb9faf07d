"""The pipeline layer: canonical L2 pixels and ERA5 fields in, cube-ready arrays out.

Sits between ``io/`` (readers, which stop source names and units) and the cube store. Stage
order lives in ``build.py``: QA filter (``qa.py``) -> exact area-weighted regridding
(``regrid.py``) -> temporal alignment (``align.py``) -> features (``features.py``) ->
normalization (``normalize.py``).
"""
