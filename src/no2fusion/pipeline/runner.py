"""The build's parallel map over days: dask on local processes or a ``distributed`` cluster.

Sits in ``pipeline/`` beside ``build.py``, its only user. Local worker processes die with the
build (``io.isolated.exit_with_parent``): a build killed with ``kill -9`` leaves no worker
writing days into the cube behind it (a rerun would race them).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from no2fusion.io.isolated import exit_with_parent

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")


def identity(value: T) -> T:
    return value


def _warm_up() -> int:
    """Runs first in each local worker process: imports and loads the numba kernel cache while
    the driver reads ERA5, so the first real day does not pay for it."""
    import no2fusion.pipeline.regrid  # noqa: F401

    return os.getpid()


class DayRunner:
    """Maps a function over days with dask: a ``distributed`` cluster when ``scheduler`` is an
    address, else a local process pool of ``workers`` processes (created once per build, started
    early, each exiting when the build process dies), or in-process when ``workers`` == 1. Use
    as a context manager."""

    def __init__(self, scheduler: str | None, workers: int, progress: bool) -> None:
        self.scheduler = scheduler
        self.workers = workers
        self.progress = progress
        self._client: Any = None
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> DayRunner:
        if self.scheduler:
            from distributed import Client

            self._client = Client(self.scheduler)
        elif self.workers > 1:
            context = multiprocessing.get_context("spawn")  # no fork of zarr/numba threads
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            )
            for _ in range(self.workers):
                self._pool.submit(_warm_up)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def worker_pids(self) -> list[int]:
        """The local worker processes (empty in-process or with a cluster)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(int(pid) for pid in processes)

    def map_batched(
        self,
        func: Callable[[T], R],
        make: Callable[[K], T],
        keys: Sequence[K],
        desc: str,
        batch: int = 64,
    ) -> list[R]:
        """``[func(make(k)) for k in keys]``, building the inputs one batch at a time so that only
        ``batch`` of them are in memory; one progress bar (tqdm) over all keys. Within a batch
        the tasks run in parallel; a batch starts when the previous one is done."""
        from tqdm import tqdm

        results: list[R] = []
        size = max(batch, 4 * self.workers)
        with tqdm(total=len(keys), desc=desc, disable=not self.progress) as bar:
            for start in range(0, len(keys), size):
                items = [make(key) for key in keys[start : start + size]]
                results.extend(self.map(func, items))
                bar.update(len(items))
        return results

    def map(self, func: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[func(x) for x in items]``, in parallel (no progress bar; see ``map_batched``)."""
        if not items:
            return []
        if self._client is not None:
            futures = self._client.map(func, items, pure=False)
            return list(self._client.gather(futures))
        import dask

        tasks = [dask.delayed(func, pure=False)(item) for item in items]
        if self._pool is not None and len(items) > 1:
            return list(
                dask.compute(
                    *tasks, scheduler="processes", pool=self._pool, num_workers=self.workers
                )
            )
        return list(dask.compute(*tasks, scheduler="synchronous"))
