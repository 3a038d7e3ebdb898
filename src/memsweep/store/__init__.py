"""The results-folder contract: :mod:`~memsweep.store.schema` (tables, units, layout),
:mod:`~memsweep.store.writer` (atomic writes to a path or ``pyarrow.fs`` URI) and
:mod:`~memsweep.store.reader` (reading, and the latest-attempt rule).

The names below are loaded on first use (PEP 562): the reader pulls in pyarrow.dataset
and pandas (~0.4 s), which a command that only checks its flags, or writes, never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memsweep.store.location import is_remote, local_is, refuse_missing_local
    from memsweep.store.reader import Results, latest_attempts, open_results
    from memsweep.store.schema import (
        APPEND_TABLES,
        EVENTS,
        NODE_SAMPLES,
        NODES,
        PROGRESS,
        SAMPLES,
        SCHEMA_VERSION,
        TRIALS,
        WHOLE_TABLES,
        schema_markdown,
    )
    from memsweep.store.writer import ResultsWriter, Row, resolve, to_table

_HOMES = {
    "reader": ("Results", "latest_attempts", "open_results"),
    "schema": (
        "APPEND_TABLES",
        "EVENTS",
        "NODES",
        "NODE_SAMPLES",
        "PROGRESS",
        "SAMPLES",
        "SCHEMA_VERSION",
        "TRIALS",
        "WHOLE_TABLES",
        "schema_markdown",
    ),
    "location": ("is_remote", "local_is", "refuse_missing_local"),
    "writer": ("ResultsWriter", "Row", "resolve", "to_table"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "APPEND_TABLES",
    "EVENTS",
    "NODES",
    "NODE_SAMPLES",
    "PROGRESS",
    "SAMPLES",
    "SCHEMA_VERSION",
    "TRIALS",
    "WHOLE_TABLES",
    "Results",
    "ResultsWriter",
    "Row",
    "is_remote",
    "latest_attempts",
    "local_is",
    "open_results",
    "refuse_missing_local",
    "resolve",
    "schema_markdown",
    "to_table",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})  # a name used once is in both
