"""One module per ``no2fusion`` subcommand; each defines ``COMMAND = base.Command(...)`` and
``cli.COMMANDS`` lists them.

Keep imports of heavy libraries (torch, xarray, numba) inside the ``run`` functions so that
``no2fusion --help`` stays fast.
"""
