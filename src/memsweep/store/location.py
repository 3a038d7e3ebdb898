"""What kind of results location a string names, without importing pyarrow (a command
checks this before it decides to read anything)."""

from __future__ import annotations

import os


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for a ``pyarrow.fs`` URI (``s3://…``, ``gs://…``); plain paths are local."""
    return "://" in os.fspath(uri)
