"""Safe file output, shared by every layer that writes: atomic writes, checks before long work,
and a failed run that leaves an earlier run's files as they were.

Sits beside ``errors.py``:

- ``atomic_path``: a writer fills a temporary file next to the target and the target appears
  only when the writer finished (``os.replace``), so a crash never leaves a half-written file
  under the real name and never damages what was there before.
- ``check_output_dir`` / ``check_output_file``: raise the ``OSError`` a run would hit later (a
  read-only folder, a full disk, a file where a folder belongs), naming the user's path, before
  any long work starts. The CLI turns it into one line and exit code 2.
- ``restored_on_failure``: a snapshot of a run folder's entries; if the block raises,
  the entries are put back exactly as they were (a failing run cannot eat an earlier run's
  ``logs/metrics.csv`` or checkpoints).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

PROBE_BYTES = 64 * 1024  # what a probe writes: enough to hit a full disk


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


def _error(code: int, path: Path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def _probe(folder: Path) -> None:
    """Write and remove a small file in ``folder``; an ``OSError`` names ``folder``."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".no2fusion-probe-") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
    except OSError as error:
        raise _error(error.errno or errno.EIO, folder) from None


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent; a file on the way is ``NotADirectoryError``."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            if candidate != path and not candidate.is_dir():
                raise _error(errno.ENOTDIR, candidate)
            return candidate
    return Path.cwd()


def check_output_dir(
    path: str | Path, subdirs: Sequence[str] = (), files: Sequence[str] = ()
) -> None:
    """Raise the ``OSError`` that writing into folder ``path`` would meet, naming the path.

    ``path`` (and its existing ``subdirs``) must be folders or absent, ``files`` below it must
    not be folders, and the folder (or its nearest existing parent) must take a small write.
    Nothing is created.
    """
    path = Path(path)
    found = _existing_ancestor(path)
    if found == path and not path.is_dir():
        raise _error(errno.ENOTDIR, path)
    for name in subdirs:
        sub = path / name
        if sub.exists() and not sub.is_dir():
            raise _error(errno.ENOTDIR, sub)
    for name in files:
        if (path / name).is_dir():
            raise _error(errno.EISDIR, path / name)
    _probe(found)
    for name in subdirs:
        if (path / name).is_dir():
            _probe(path / name)


def check_output_file(path: str | Path) -> None:
    """Raise the ``OSError`` that writing file ``path`` (atomically, beside itself) would meet."""
    path = Path(path)
    if path.is_dir():
        raise _error(errno.EISDIR, path)
    found = _existing_ancestor(path.parent)
    _probe(found)


# Files that are only ever replaced whole (written by atomic rename): a hard link keeps their
# old content, so the snapshot of a run's checkpoints costs no disk space. Everything else is
# copied (Lightning appends to metrics.csv in place).
LINKED_SUFFIXES = (".ckpt",)


def _snapshot(source: Path, target: Path) -> None:
    """A copy of ``source`` (a file or a tree) at ``target``; ``LINKED_SUFFIXES`` hard-linked."""

    def keep(src: str, dst: str) -> None:
        if src.endswith(LINKED_SUFFIXES):
            try:
                os.link(src, dst)
                return
            except OSError:
                pass  # a file system without hard links
        shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=keep, symlinks=True)
    else:
        keep(str(source), str(target))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def restored_on_failure(folder: str | Path, names: Sequence[str]) -> Iterator[None]:
    """Keep ``folder/<name>`` for each of ``names`` as it is now if the block raises.

    Before the block, existing entries are copied into ``folder/.previous-<pid>`` (checkpoints
    hard-linked: they are replaced only by atomic rename, so a link keeps the old content). If
    the block raises,
    each entry that existed is put back exactly (whatever the failed run wrote under that name
    is removed first); entries that did not exist keep what the block wrote (e.g. a
    ``last.ckpt`` to resume from). On success the snapshot is dropped.
    """
    folder = Path(folder)
    present = [name for name in names if (folder / name).exists()]
    if not present:
        yield
        return
    keep = folder / f".previous-{os.getpid()}"
    _remove(keep)
    keep.mkdir()
    try:
        for name in present:
            _snapshot(folder / name, keep / name)
    except BaseException:
        shutil.rmtree(keep, ignore_errors=True)
        raise
    try:
        yield
    except BaseException:
        for name in present:
            _remove(folder / name)
            os.replace(keep / name, folder / name)
        raise
    finally:
        shutil.rmtree(keep, ignore_errors=True)
