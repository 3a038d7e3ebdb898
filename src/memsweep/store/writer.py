"""Writing a results folder: atomic Parquet parts, whole small tables, text files.

**Crash safety.** Every part file is written under a name starting with ``.`` and then
renamed, so a file with a final name is always complete; readers (pyarrow, pandas,
polars, duckdb with ``*.parquet``) skip the hidden temporaries. On object stores a PUT
is already atomic. Appending never rewrites a file; ``trials.parquet`` and
``nodes.parquet`` are small and replaced whole, atomically.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from memsweep.errors import DataError
from memsweep.store.location import is_remote
from memsweep.store.schema import APPEND_TABLES, WHOLE_TABLES

Row = Mapping[str, object]
"""One row of a table: column name → a value of that column's Arrow type (a missing
column is null, an unknown one is dropped). The writer converts, never reads, values."""


def resolve(uri: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """A results location → (filesystem, path in it). Plain paths are local."""
    text = os.fspath(uri)
    if is_remote(text):
        try:
            return pafs.FileSystem.from_uri(_gcs_retry_limited(text))  # type: ignore[no-any-return]
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            raise DataError(f"Cannot open storage {text!r}: {exc}") from None
    return pafs.LocalFileSystem(), str(Path(text).resolve())


GCS_RETRY_LIMIT_S = 20
"""Seconds pyarrow's GCS client retries a request before it gives up (memsweep's default)."""


def _gcs_retry_limited(uri: str) -> str:
    """``gs://`` (or ``gcs://``) with ``retry_limit_seconds`` set unless given: pyarrow's
    GCS client otherwise retries for 15 minutes, so without credentials ``memsweep
    analyze gs://…`` said nothing for 15 minutes (it fails in ~30 s now, as an S3
    address does in seconds)."""
    url = urllib.parse.urlsplit(uri)
    if url.scheme.lower() not in ("gs", "gcs") or "retry_limit_seconds" in url.query:
        return uri
    query = "&".join(q for q in (url.query, f"retry_limit_seconds={GCS_RETRY_LIMIT_S}") if q)
    return urllib.parse.urlunsplit(url._replace(query=query))


def _is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def to_table(rows: Sequence[Row], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) → a table of ``schema``; missing keys become nulls, others are dropped."""
    return pa.Table.from_pylist(rows, schema=schema)


class ResultsWriter:
    """Writes a sweep's tables. Thread-safe; each call leaves only complete files.

    **Ownership.** One writer per sweep driver. Part files carry a per-writer random token
    so that a resumed driver never overwrites an earlier one's files.
    """

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        self.uri = os.fspath(uri)
        self.fs, self.root = resolve(self.uri)
        self._token = uuid.uuid4().hex[:8]
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{self._token}"
        self._seq = itertools.count()
        self._lock = threading.Lock()
        try:
            self.fs.create_dir(self.root, recursive=True)
            for name in APPEND_TABLES:
                self.fs.create_dir(f"{self.root}/{name}", recursive=True)
        except OSError as exc:
            raise DataError(
                f"Cannot create the results folder {self.uri}: {exc}. "
                "Choose a writable 'storage' in the sweep file or free some space."
            ) from None

    def _atomic_write(self, final: str, write: Any) -> None:
        try:
            if not _is_local(self.fs):
                write(final)
                return
            directory, base = final.rsplit("/", 1)
            tmp = f"{directory}/.{base}.{self._token}.tmp"
            try:
                write(tmp)
                Path(tmp).replace(final)
            except BaseException:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            # A full disk, a folder made read-only or removed: say so in one line.
            reason = _reason(exc)
            raise DataError(
                f"Cannot write {final}: {reason}. Free space there or choose another "
                "'storage' (--storage)."
            ) from None

    def append(self, table_name: str, table: pa.Table) -> str | None:
        """Add ``table`` as a new part file of ``table_name``; returns its path."""
        if table.num_rows == 0:
            return None
        schema = APPEND_TABLES[table_name]
        table = table.cast(schema) if table.schema != schema else table
        with self._lock:
            seq = next(self._seq)
        name = f"part-{time.time_ns():020d}-{self._token}-{seq:06d}.parquet"
        final = f"{self.root}/{table_name}/{name}"
        self._atomic_write(
            final, lambda path: pq.write_table(table, path, filesystem=self.fs, compression="zstd")
        )
        return final

    def append_rows(self, table_name: str, rows: Sequence[Row]) -> str | None:
        return self.append(table_name, to_table(rows, APPEND_TABLES[table_name]))

    def replace(self, table_name: str, rows: Sequence[Row]) -> None:
        """Replace a small whole table (``trials`` or ``nodes``) atomically."""
        table = to_table(rows, WHOLE_TABLES[table_name])
        with self._lock:
            self._atomic_write(
                f"{self.root}/{table_name}.parquet",
                lambda path: pq.write_table(table, path, filesystem=self.fs),
            )

    def write_text(self, name: str, text: str) -> None:
        """A small text file (study.yaml, versions.json) in the results root."""
        data = text.encode("utf-8")

        def write(path: str) -> None:
            with self.fs.open_output_stream(path) as out:
                out.write(data)

        with self._lock:
            self._atomic_write(f"{self.root}/{name}", write)


def _reason(exc: OSError) -> str:
    """``No space left on device`` rather than pyarrow's wrapping of it."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or first_line(exc)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
