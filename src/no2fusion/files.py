"""Atomic file writes, shared by every layer that writes a file.

Sits beside ``errors.py``: a writer fills a temporary file next to the target and the target
appears only when the writer finished (``os.replace``), so a crash never leaves a half-written
file under the real name and never damages what was there before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``, else remove it.

    The writer must close the temporary file before the ``with`` block ends.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
