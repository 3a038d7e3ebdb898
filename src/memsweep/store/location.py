"""What kind of results location a string names, without importing pyarrow (a command
checks this before it decides to read anything)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from memsweep.errors import DataError


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for a ``pyarrow.fs`` URI (``s3://…``, ``gs://…``); plain paths are local."""
    return "://" in os.fspath(uri)


def no_such_folder(uri: str | os.PathLike[str]) -> DataError:
    """The refusal of a results location that does not exist (one wording everywhere)."""
    return DataError(f"No such results folder: {os.fspath(uri)}")


def refuse_missing_local(uri: str | os.PathLike[str]) -> None:
    """:class:`DataError` (exit 3) when ``uri`` is a local path that does not exist,
    before a command imports pyarrow and pandas to read it (~0.7 s); remote locations
    are checked when they are opened."""
    text = os.fspath(uri)
    if not text.strip():
        raise DataError("an empty path is not a results folder: give results/<sweep-name>")
    if is_remote(text):
        return
    if not local_is(text, Path.exists):
        raise no_such_folder(uri)


def local_is(text: str, test: Callable[[Path], bool]) -> bool:
    """``test(Path(text))`` (``Path.exists``, ``Path.is_dir``), with the OSError of a path
    that cannot be looked up (a name too long, a folder on the way that cannot be
    searched) as one :class:`DataError` line (exit 3)."""
    try:
        return test(Path(text))
    except OSError as exc:
        raise DataError(f"{text[:200]}: cannot be read ({exc.strerror or exc})") from None
