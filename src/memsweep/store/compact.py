"""Compacting a results folder: each appended table's many small part files → a few large ones.

A sweep appends one Parquet part per table per flush (a default sweep leaves about a
thousand); compaction merges them into files of up to ``target_bytes`` of input each,
so that every reader opens a handful of files instead of thousands.

**Crash safety.** Compaction never rewrites a file in place. For each group of inputs it

1. writes the merged rows to a hidden temporary (``.compact-….parquet.tmp``, skipped by
   every reader), flushes it to disk and renames it to ``compact-<ns>-<token>.parquet``;
   the new file's Parquet footer names every input it *covers* (key
   ``memsweep.covers``, a JSON list of file names in the same folder);
2. then deletes the inputs it covers.

A kill during step 1 leaves the inputs untouched and a hidden temporary that the next
compaction removes. A kill between steps 1 and 2 leaves both the compacted file and the
parts it covers: :func:`live_files` (and so :mod:`memsweep.store.reader` and
``memsweep analyze``) skips any file covered by a compacted file that is present, so no
row is counted twice; a reader that globs the folder itself (duckdb
``samples/*.parquet``, ``pyarrow.dataset``) would count those rows twice until the next
``memsweep compact RESULTS``, whose first step finishes the interrupted deletion.

**Concurrency.** Compaction may run while a sweep is still appending (it only takes the
parts that exist when it lists the folder); run one compaction at a time per folder.
On an object store (``s3://…``) a PUT is atomic, so step 1 writes the final name at once.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from memsweep.errors import DataError
from memsweep.store.reader import COMPACT_PREFIX, COVERS_KEY, covered_by, list_parquet, open_results
from memsweep.store.schema import APPEND_TABLES
from memsweep.store.writer import first_line

TARGET_BYTES = 512 * 1024 * 1024
"""Input bytes merged into one compacted file at most; a compacted file this large is
left as it is by later compactions."""

ROW_GROUP_ROWS = 256 * 1024
"""Rows per Parquet row group of a compacted file (columns of ~1–2 MB: cheap to skip)."""


@dataclass(frozen=True)
class TableCompaction:
    """What compaction did to one appended table."""

    table: str
    """``samples``, ``node_samples``, ``progress`` or ``events``."""
    files_before: int
    """Visible Parquet files in the table's folder before (covered leftovers included)."""
    files_after: int
    """Visible Parquet files after."""
    rows: int
    """Rows the table holds (the same before and after; counted once)."""
    bytes_before: int
    """Bytes of the visible files before."""
    bytes_after: int
    """Bytes of the visible files after."""


@dataclass(frozen=True)
class Compaction:
    """The result of :func:`compact_results` on one results folder."""

    uri: str
    tables: tuple[TableCompaction, ...]
    seconds: float
    """Wall time the compaction took."""

    def summary(self) -> str:
        """One line per table, e.g. ``samples: 812 → 1 files, 9.1 MB → 0.4 MB, 80,791 rows``."""
        lines = [f"{self.uri}: compacted in {self.seconds:.1f} s"]
        for t in self.tables:
            if t.files_before == 0:
                continue
            lines.append(
                f"  {t.table}: {t.files_before} → {t.files_after} files, "
                f"{t.bytes_before / 1e6:.1f} MB → {t.bytes_after / 1e6:.1f} MB, {t.rows:,} rows"
            )
        return "\n".join(lines)


def compact_results(uri: str | os.PathLike[str], *, target_bytes: int = TARGET_BYTES) -> Compaction:
    """Compact every appended table of the results folder at ``uri`` (a path or a
    ``pyarrow.fs`` URI). Raises :class:`DataError` if it is not a results folder, a part
    cannot be read (nothing is changed then) or the storage refuses a write."""
    started = time.monotonic()
    results = open_results(uri)
    done = []
    for table in APPEND_TABLES:
        folder = f"{results.root}/{table}"
        if not results.exists(table):
            continue
        done.append(compact_table(results.fs, folder, table, target_bytes=target_bytes))
    return Compaction(uri=os.fspath(uri), tables=tuple(done), seconds=time.monotonic() - started)


def compact_table(
    fs: pafs.FileSystem, folder: str, table: str, *, target_bytes: int = TARGET_BYTES
) -> TableCompaction:
    """Compact one table's folder: finish an interrupted compaction, merge, delete."""
    before = list_parquet(fs, folder)
    finish_interrupted(fs, folder)
    written = write_compacted(fs, folder, table, target_bytes=target_bytes)
    for path in written:
        remove_covered(fs, path)
    after = list_parquet(fs, folder)
    rows = sum(pq.read_metadata(info.path, filesystem=fs).num_rows for info in after)
    return TableCompaction(
        table=table,
        files_before=len(before),
        files_after=len(after),
        rows=rows,
        bytes_before=sum(info.size or 0 for info in before),
        bytes_after=sum(info.size or 0 for info in after),
    )


def finish_interrupted(fs: pafs.FileSystem, folder: str) -> None:
    """Step 2 of every compaction a kill interrupted: delete what present compacted files
    cover, and the hidden temporaries of compactions killed while writing."""
    for info in list_parquet(fs, folder):
        if info.base_name.startswith(COMPACT_PREFIX):
            remove_covered(fs, info.path)
    if isinstance(fs, pafs.LocalFileSystem):
        for stale in Path(folder).glob(f".{COMPACT_PREFIX}*.tmp"):
            stale.unlink(missing_ok=True)


def write_compacted(
    fs: pafs.FileSystem, folder: str, table: str, *, target_bytes: int = TARGET_BYTES
) -> list[str]:
    """Step 1: merge the folder's small files into compacted files; returns their paths.

    Inputs are the part files and the compacted files smaller than ``target_bytes``, in
    name order (parts are named by their write time), grouped up to ``target_bytes`` of
    input each; a group of one file is left alone.
    """
    live = [
        info
        for info in _live_infos(fs, folder)
        if not (info.base_name.startswith(COMPACT_PREFIX) and (info.size or 0) >= target_bytes)
    ]
    written = []
    for group in _groups(live, target_bytes):
        written.append(_write_one(fs, folder, table, [info.path for info in group]))
    return written


def remove_covered(fs: pafs.FileSystem, compacted: str) -> None:
    """Step 2: delete the files that the compacted file at ``compacted`` covers."""
    folder = compacted.rsplit("/", 1)[0]
    for name in covered_by(fs, compacted):
        try:
            fs.delete_file(f"{folder}/{name}")
        except FileNotFoundError:
            continue
        except OSError as exc:
            if fs.get_file_info(f"{folder}/{name}").type == pafs.FileType.NotFound:
                continue
            raise DataError(
                f"Cannot delete {folder}/{name} after compacting it into {compacted}: "
                f"{first_line(exc)}. Readers of memsweep skip it; run `memsweep compact` "
                "again once the storage is writable."
            ) from None


def _live_infos(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    infos = list_parquet(fs, folder)
    covered: set[str] = set()
    for info in infos:
        if info.base_name.startswith(COMPACT_PREFIX):
            covered.update(covered_by(fs, info.path))
    return [info for info in infos if info.base_name not in covered]


def _groups(infos: list[pafs.FileInfo], target_bytes: int) -> Iterable[list[pafs.FileInfo]]:
    group: list[pafs.FileInfo] = []
    size = 0
    for info in infos:
        if group and size + (info.size or 0) > target_bytes:
            if len(group) > 1:
                yield group
            group, size = [], 0
        group.append(info)
        size += info.size or 0
    if len(group) > 1:
        yield group


def _write_one(fs: pafs.FileSystem, folder: str, table: str, inputs: list[str]) -> str:
    schema = APPEND_TABLES[table]
    covers = json.dumps([path.rsplit("/", 1)[-1] for path in inputs])
    out_schema = schema.with_metadata({**(schema.metadata or {}), COVERS_KEY: covers.encode()})
    name = f"{COMPACT_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    final = f"{folder}/{name}"
    local = isinstance(fs, pafs.LocalFileSystem)
    target = f"{folder}/.{name}.tmp" if local else final
    try:
        dataset = ds.dataset(inputs, filesystem=fs, format="parquet", schema=schema)
        with pq.ParquetWriter(target, out_schema, filesystem=fs, compression="zstd") as out:
            pending: list[pa.RecordBatch] = []
            count = 0
            for batch in dataset.to_batches(use_threads=False):
                pending.append(batch)
                count += batch.num_rows
                if count >= ROW_GROUP_ROWS:
                    out.write_table(pa.Table.from_batches(pending, schema=schema))
                    pending, count = [], 0
            if pending:
                out.write_table(pa.Table.from_batches(pending, schema=schema))
        if local:
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            Path(target).replace(final)
    except (pa.ArrowInvalid, OSError) as exc:
        if local:
            Path(target).unlink(missing_ok=True)
        raise DataError(
            f"Cannot compact {folder}/: {first_line(exc)}. Nothing was changed; a damaged "
            "part file must be moved out of the folder first."
        ) from None
    return final
