"""The results-folder contract: :mod:`~memsweep.store.schema` (tables, units, layout),
:mod:`~memsweep.store.writer` (atomic writes to a path or ``pyarrow.fs`` URI) and
:mod:`~memsweep.store.reader` (reading, and the latest-attempt rule)."""

from __future__ import annotations

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
from memsweep.store.writer import ResultsWriter, Row, is_remote, resolve, to_table

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
    "open_results",
    "resolve",
    "schema_markdown",
    "to_table",
]
