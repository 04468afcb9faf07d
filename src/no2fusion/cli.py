"""The ``no2fusion`` command line: one subcommand per stage.

Sits at the right end of the flow with ``main.py``: it is the only code (besides tests) that
reads config files, and it wires library functions together. ``COMMANDS`` lists the
subcommands (each a module of ``no2fusion.commands`` with a ``COMMAND``).

What the user sees when something goes wrong is one line on stderr: a ``No2FusionError``
anywhere below, an ``OSError`` (a read-only folder, a full disk, a file where a folder should
be: the line names the path) and a command-line mistake (argparse's usage block is replaced by
one line) all end with exit code 2. Warnings of the package's loggers are printed as
``no2fusion COMMAND: warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from no2fusion import __version__
from no2fusion.commands import build, check, config, download, predict, run, synth, train
from no2fusion.commands.base import Command
from no2fusion.errors import EXIT_USER_ERROR, No2FusionError

COMMANDS: tuple[Command, ...] = (
    synth.COMMAND,
    build.COMMAND,
    train.COMMAND,
    run.COMMAND,
    predict.COMMAND,
    check.COMMAND,
    download.COMMAND,
    config.COMMAND,
)

# Lines Lightning prints about itself, not about the user's run: its hardware summary and tips
# to install its cloud logger (INFO on its rank-zero loggers), and these warnings.
_LIGHTNING_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The number of training batches .* logging interval",
    r"Precision .* is not supported by the model summary",
)


def quiet_lightning() -> None:
    """Hide Lightning's chatter (above); the user's own warnings and errors still show.

    Lightning resets its package logger's level when imported, so the rank-zero loggers it
    writes through are set instead.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in _LIGHTNING_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _ConsoleHandler(logging.Handler):
    """The package's warnings as ``no2fusion COMMAND: warning: ...`` lines on the current
    ``sys.stderr`` (looked up per line, so a replaced stderr is honoured)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.command = "no2fusion"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"{self.command}: warning: {record.getMessage()}", file=sys.stderr)
        except Exception:
            self.handleError(record)


def _console_handler(command: str) -> None:
    logger = logging.getLogger("no2fusion")
    handler = next((h for h in logger.handlers if isinstance(h, _ConsoleHandler)), None)
    if handler is None:
        handler = _ConsoleHandler()
        logger.addHandler(handler)
    handler.command = f"no2fusion {command}"


def os_error_line(error: OSError, args: argparse.Namespace) -> str:
    """One line for an ``OSError``: the path (the error's, else the command's output) and the
    system's reason, e.g. ``/data/run/checkpoints: Not a directory``."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno == errno.ENOSPC:
        reason = f"{reason} (the disk is full)"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"{reason} (cannot write there)"
    path = error.filename
    if path is None:  # e.g. a write into an open file on a full disk
        path = next(
            (getattr(args, name) for name in ("out", "output") if getattr(args, name, None)),
            None,
        )
        if path is not None:
            return f"while writing {path}: {reason}"
        return reason
    if error.filename2 is not None:
        return f"{path} -> {error.filename2}: {reason}"
    return f"{path}: {reason}"


def _is_torch_write_failure(error: RuntimeError) -> bool:
    """torch's zip writer reports a failed write (a full disk) as a RuntimeError
    ("[enforce fail at inline_container.cc:...] . PytorchStreamWriter failed writing file
    data/0: file write failed"), not as an OSError."""
    text = str(error)
    return "PytorchStreamWriter failed" in text or "file write failed" in text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="no2fusion",
        description="TROPOMI NO2 + ERA5 -> datacube -> cross-modal attention model -> report",
    )
    parser.add_argument("--version", action="version", version=f"no2fusion {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``no2fusion`` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_lightning()
    _console_handler(args.command)
    try:
        return int(args._run(args))
    except No2FusionError as error:
        print(f"no2fusion {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:
        print(f"no2fusion {args.command}: error: {os_error_line(error, args)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RuntimeError as error:
        if not _is_torch_write_failure(error):
            raise
        output = getattr(args, "output", None) or getattr(args, "out", None)
        reason = "writing a checkpoint failed (the disk is full?)"
        line = f"while writing {output}: {reason}" if output else reason
        print(f"no2fusion {args.command}: error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"no2fusion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
