"""The seed's entry point: ``python main.py --mode full|test|eval --config ... --output ...``.

A thin alias for ``no2fusion run``; the workflow is ``src/no2fusion/workflow/run.py``.
"""

from __future__ import annotations

import sys

from no2fusion.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
