"""User-facing errors: bad input or bad config.

Sits beside every layer. Library code raises a subclass of ``No2FusionError`` with a message
that names the file (or config key) and the problem in one line; ``cli.main`` catches it,
prints that one line to stderr and exits with code 2 (an ``OSError`` on an output path gets the
same treatment). ``EXIT_INPUTS_REJECTED`` (3) is for a run that finished but rejected some
input files (``no2fusion build`` without ``--skip-bad-files``). Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

EXIT_USER_ERROR = 2
EXIT_INPUTS_REJECTED = 3  # finished, but some input files were bad and left out


class No2FusionError(Exception):
    """Base class for errors the user can fix. ``str(error)`` is the one line shown."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        line = f"{path}: {message}" if path is not None else message
        super().__init__(line.replace("\n", " "))

    def __reduce__(self) -> tuple[type[No2FusionError], tuple[str, Path | None]]:
        # pickled across processes (build workers, the isolated reader) with its path
        return type(self), (self.message, self.path)


class ConfigError(No2FusionError):
    """An invalid config file or value."""


class InputFileError(No2FusionError):
    """A source file that cannot be used: corrupt, truncated, missing a variable, wrong units."""


class NoDataError(No2FusionError):
    """Valid files that hold nothing usable here: no pixel in the domain, no time overlap."""


class CubeSchemaError(No2FusionError):
    """A datacube that does not follow the schema in ``io/cube_schema.py``."""


class CubeDamagedError(CubeSchemaError):
    """A datacube with a missing or undecodable chunk; names the cube, variable and day."""


class CredentialsError(No2FusionError):
    """Missing or rejected credentials for a download service."""


class TrainingDivergedError(No2FusionError):
    """A NaN or inf loss; the message names the epoch and batch."""
