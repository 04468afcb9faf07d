"""Reads that cannot hang or crash their caller: a helper process with a time limit.

Sits in ``io/`` at the left of the flow; ``pipeline/build.py`` reads every L2 and ERA5 file
through ``run_isolated``. A damaged HDF5 file can make the HDF5 library loop forever inside one
C call (seen with an L2 file zeroed in the middle: ``H5HG__cache_heap_deserialize`` never
returns while the file is opened) or crash the process; Python cannot interrupt either. So the
read runs in a helper process (one per calling thread, started on first use and reused), and
the caller waits at most ``read_timeout_s()`` seconds (environment variable
``NO2FUSION_READ_TIMEOUT_S``, default 300) for the answer. A read that does not answer in time,
or kills its helper, becomes an ``InputFileError`` naming the file, and the helper is replaced.

Helpers (and the build's worker processes, ``exit_with_parent``) die with the process that
started them: on Linux the kernel kills them when it dies (``PR_SET_PDEATHSIG``), and a
watchdog thread also exits when the parent's pid changes (any POSIX system).

``subprocess`` rather than ``multiprocessing``: a daemonic process (a dask ``distributed``
worker) may not start ``multiprocessing`` children, and a pool cannot kill one hung task.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from no2fusion.errors import InputFileError, No2FusionError

TIMEOUT_ENV = "NO2FUSION_READ_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
_HEADER = struct.Struct("!Q")  # length of the pickled message that follows
_PR_SET_PDEATHSIG = 1

R = TypeVar("R")


def read_timeout_s() -> float:
    """Seconds a read may take (``NO2FUSION_READ_TIMEOUT_S``, default 300)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


# ------------------------------------------------------------------------------------------------
# dying with the parent
# ------------------------------------------------------------------------------------------------
def _watch_parent(parent_pid: int, interval_s: float) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent is gone: stop now, whatever this process was doing
        time.sleep(interval_s)


def exit_with_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """Make this process exit when ``parent_pid`` (its parent) dies, even by ``kill -9``: a
    daemon thread polls ``os.getppid()`` every ``interval_s`` seconds (any POSIX system).

    The initializer of the build's worker processes, and called by every reader helper, which
    also asks the Linux kernel for SIGKILL when its parent goes (``_set_pdeathsig``; that fires
    when the *thread* that started it ends, which is why helpers are one per thread).
    """
    if os.getppid() != parent_pid:
        os._exit(1)
    watchdog = threading.Thread(
        target=_watch_parent, args=(parent_pid, interval_s), name="exit-with-parent", daemon=True
    )
    watchdog.start()


def _set_pdeathsig() -> None:
    """Linux: SIGKILL this process when its parent thread ends (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# ------------------------------------------------------------------------------------------------
# the wire: length-prefixed pickles over pipes
# ------------------------------------------------------------------------------------------------
def _send(stream: IO[bytes], message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    """The next message, or raise ``EOFError`` when the other side is gone."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError
    return pickle.loads(payload)


def _serve(parent_pid: int) -> None:
    """The helper's loop: ``(func, args, kwargs)`` in, ``(kind, value)`` out, until EOF."""
    _set_pdeathsig()
    exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent to handle
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies on the reply pipe
    while True:
        try:
            func, args, kwargs = _receive(requests)
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("ok", func(*args, **kwargs))
        except No2FusionError as error:
            reply = ("error", error)
        except Exception:
            reply = ("bug", traceback.format_exc())
        _send(replies, reply)


# ------------------------------------------------------------------------------------------------
# the caller's side
# ------------------------------------------------------------------------------------------------
class _Helper:
    """One helper process and its pipes."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "no2fusion.io.isolated", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # HDF5 prints diagnostics for damaged files; the
            # reply carries the error
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def call(
        self, path: str | Path, timeout_s: float, func: Callable[..., R], *args: Any, **kwargs: Any
    ) -> R:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            _send(self.process.stdin, (func, args, kwargs))
        except (BrokenPipeError, OSError):
            self.stop()
            raise InputFileError("the reader process died before reading this file", path) from None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            self.stop()
            raise InputFileError(
                f"reading did not finish within {timeout_s:g} s (a damaged HDF5 file can make "
                f"the library loop forever; raise {TIMEOUT_ENV} for a slow disk)",
                path,
            )
        try:
            kind, value = _receive(self.process.stdout)
        except EOFError:
            self.stop()
            raise InputFileError(
                "reading crashed the netCDF/HDF5 library (a damaged file)", path
            ) from None
        if kind == "ok":
            return value
        if kind == "error":
            raise value
        raise RuntimeError(f"reading {path} failed in the reader process:\n{value}")

    def stop(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


_helpers = threading.local()


def run_isolated(path: str | Path, func: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``func(*args, **kwargs)`` in this thread's helper process, within ``read_timeout_s()``.

    ``func``, its arguments and its result must pickle (a module-level function or a
    ``functools.partial`` of one). ``path`` names the file in the error of a read that hangs
    or crashes. A ``No2FusionError`` raised by ``func`` is raised here unchanged.

    Raises:
        InputFileError: the read did not finish in time, or crashed the helper.
        RuntimeError: ``func`` raised anything else (a bug; the helper's traceback attached).
    """
    helper: _Helper | None = getattr(_helpers, "helper", None)
    if helper is None or not helper.alive:
        helper = _Helper()
        _helpers.helper = helper
    return helper.call(path, read_timeout_s(), func, *args, **kwargs)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
