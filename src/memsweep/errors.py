"""The one project error type.

Every expected failure (a bad sweep file, a folder that is not a sweep, a refused token)
is a :class:`MemsweepError`. The CLI prints its message as one line on stderr and exits
with its ``exit_code``; the user never sees a traceback for it.
"""

from __future__ import annotations


class MemsweepError(Exception):
    """An expected failure with a message that names the problem and the fix."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SpecError(MemsweepError):
    """A sweep file that cannot be run: a typo, a wrong type or an impossible value."""


class UsageError(MemsweepError):
    """A command's arguments that do not fit the data they ask about: a flag the sweep
    needs and that is missing, a value of the wrong kind, a factor the sweep lacks."""


class DataError(MemsweepError):
    """A results folder that cannot be read or analysed."""

    exit_code = 3


class ClusterError(MemsweepError):
    """The Ray cluster refused or cannot do what the sweep asks."""

    exit_code = 4


class OutputError(MemsweepError):
    """An output path memsweep cannot write: a file where a folder belongs, no permission."""

    exit_code = 5


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "the command ran but its answer is a failure: a sweep with failed trials, "
    "nothing fits the --budget",
    2: "bad input: a sweep file, a flag or an argument (SpecError, usage)",
    3: "a results folder that cannot be read or analysed (DataError)",
    4: "the Ray cluster refused or cannot do what the sweep asks (ClusterError)",
    5: "an output path that cannot be written (OutputError)",
    70: "an internal error: a bug in memsweep, reported with where to file it",
    130: "interrupted (Ctrl-C)",
}
"""Every exit code of ``memsweep`` and ``python -m memsweep.analyze`` (printed by ``--help``)."""
