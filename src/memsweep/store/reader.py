"""Reading a results folder, and THE latest-attempt rule that every reader applies.

An appended table's folder holds part files (``part-*.parquet``, one per flush) and,
after :mod:`memsweep.store.compact`, compacted files (``compact-*.parquet``) whose footer
names the parts they replace. :func:`live_files` is the rule every memsweep reader uses:
the visible Parquet files minus those a present compacted file covers, so that a
compaction killed before it deleted its inputs never counts a row twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from memsweep.errors import DataError
from memsweep.store.location import is_remote, no_such_folder
from memsweep.store.schema import APPEND_TABLES, SCHEMA_VERSION, WHOLE_TABLES
from memsweep.store.writer import first_line, resolve

COMPACT_PREFIX = "compact-"
"""File-name prefix of a compacted file in an appended table's folder."""

COVERS_KEY = b"memsweep.covers"
"""Parquet footer key of a compacted file: a JSON list of the file names it replaces."""


def list_parquet(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    """The visible Parquet files of ``folder`` in name order (hidden temporaries skipped)."""
    selector = pafs.FileSelector(folder, recursive=False, allow_not_found=True)
    try:
        found = fs.get_file_info(selector)
    except OSError as exc:
        # A file where a table's folder belongs (a copy gone wrong), or no permission.
        raise DataError(
            f"{folder} cannot be listed as a table folder ({first_line(exc)}): "
            "move it aside or restore the folder, then run again"
        ) from None
    return sorted(
        (
            info
            for info in found
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith((".", "_"))
        ),
        key=lambda info: info.base_name,
    )


def restore_fix(path: str) -> str:
    """The fix for a damaged file of a results folder (nothing memsweep writes rebuilds it)."""
    return f"restore it from a copy of the results folder (committed results: `git checkout -- {path}`)"


@dataclass(frozen=True)
class SkippedFile:
    """A Parquet file of an appended table that cannot be read (truncated by a copy, a
    disk error), left out by :func:`readable_files` so that the rest can be analysed."""

    path: str
    """The file's path (as the folder's filesystem names it)."""
    reason: str
    """The first line of the Parquet reader's error."""

    def note(self, root: str) -> str:
        """One sentence for a report: the file (relative to ``root``), why, what is lost, the fix."""
        return (
            f"{self.problem(root)}: skipped, so the rows only it holds are not analysed; to include "
            f"them, {restore_fix(self.path)}"
        )

    def problem(self, root: str) -> str:
        """``samples/compact-….parquet cannot be read (REASON)``, the file relative to ``root``."""
        shown = self.path[len(root) + 1 :] if self.path.startswith(root + "/") else self.path
        return f"{shown} cannot be read ({self.reason})"


@dataclass(frozen=True)
class TableFiles:
    """An appended table's files split into the readable ones and those skipped."""

    files: tuple[str, ...]
    """Paths of the readable files holding the table's rows (:func:`live_files`' rule)."""
    skipped: tuple[SkippedFile, ...]
    """Files whose Parquet footer cannot be read; their rows are not in ``files``."""


def footer_problem(fs: pafs.FileSystem, path: str) -> str | None:
    """None if the Parquet footer of ``path`` reads, else the first line of the error.
    Reads the footer only (a few kB): a truncated file has lost it."""
    try:
        pq.read_metadata(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        return first_line(exc)
    return None


def damaged_files(fs: pafs.FileSystem, paths: Sequence[str]) -> list[SkippedFile]:
    """The files of ``paths`` that cannot be read whole (every page decoded), with why.
    Reads every file: for a reader that has already failed on one of them and must find
    which (a footer that reads, pages that do not), not for every read."""
    damaged = []
    for path in paths:
        try:
            pq.read_table(path, filesystem=fs)
        except (pa.ArrowException, OSError, ValueError) as exc:
            damaged.append(SkippedFile(path, first_line(exc)))
    return damaged


def readable_files(fs: pafs.FileSystem, folder: str) -> TableFiles:
    """:func:`live_files` minus the files whose footer cannot be read, and those files.

    A damaged compacted file covers nothing: the parts it replaced, if a compaction killed
    before deleting them left them there, are read instead (no row is lost then)."""
    infos = list_parquet(fs, folder)
    skipped: dict[str, SkippedFile] = {}
    covered: set[str] = set()
    for info in infos:
        problem = footer_problem(fs, info.path)
        if problem is not None:
            skipped[info.path] = SkippedFile(info.path, problem)
        elif info.base_name.startswith(COMPACT_PREFIX):
            covered.update(covered_by(fs, info.path))
    files = tuple(
        info.path for info in infos if info.base_name not in covered and info.path not in skipped
    )
    return TableFiles(files=files, skipped=tuple(skipped.values()))


def covered_by(fs: pafs.FileSystem, compacted: str) -> list[str]:
    """The file names (in the same folder) that the compacted file ``compacted`` replaces."""
    try:
        metadata = pq.read_schema(compacted, filesystem=fs).metadata or {}
        names = json.loads(metadata.get(COVERS_KEY, b"[]"))
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise DataError(
            f"{compacted} is not a readable compacted Parquet file ({first_line(exc)}): "
            f"{restore_fix(compacted)}, or move it out of the folder to analyse the rest without "
            "its rows"
        ) from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{compacted}: its {COVERS_KEY.decode()} footer is not a list of names")
    return names


def live_files(fs: pafs.FileSystem, folder: str) -> list[str]:
    """Paths of the Parquet files that hold ``folder``'s rows, each row in exactly one:
    visible files minus those covered by a present compacted file."""
    infos = list_parquet(fs, folder)
    covered: set[str] = set()
    for info in infos:
        if info.base_name.startswith(COMPACT_PREFIX):
            covered.update(covered_by(fs, info.path))
    return [info.path for info in infos if info.base_name not in covered]


VERSIONS_FIX = (
    "restore it from a copy of the results folder, or delete it (it only records the "
    "versions the sweep ran with; without it the folder is read as this memsweep's schema)"
)


@dataclass(frozen=True)
class Results:
    """Read access to a results folder (written by this or an earlier memsweep run)."""

    uri: str
    fs: pafs.FileSystem
    root: str

    def exists(self, name: str) -> bool:
        info = self.fs.get_file_info(f"{self.root}/{name}")
        return bool(info.type != pafs.FileType.NotFound)

    def dataset(self, table_name: str, files: Sequence[str] | None = None) -> ds.Dataset:
        """A ``pyarrow.dataset`` over one appended table (possibly empty): over ``files``
        if given (e.g. :meth:`readable`'s), else over all of :meth:`files`."""
        schema = APPEND_TABLES[table_name]
        files = self.files(table_name) if files is None else list(files)
        if not files:
            return ds.dataset(pa.Table.from_batches([], schema=schema))
        return ds.dataset(files, filesystem=self.fs, format="parquet", schema=schema)

    def files(self, table_name: str) -> list[str]:
        """The Parquet files holding an appended table's rows (:func:`live_files`)."""
        if not self.exists(table_name):
            return []
        return live_files(self.fs, f"{self.root}/{table_name}")

    def readable(self, table_name: str) -> TableFiles:
        """An appended table's readable files and the damaged ones skipped
        (:func:`readable_files`); for readers that go on without what cannot be read and
        say so, where :meth:`files` and :meth:`table` stop at the first damaged file."""
        if not self.exists(table_name):
            return TableFiles(files=(), skipped=())
        return readable_files(self.fs, f"{self.root}/{table_name}")

    def table(self, table_name: str, columns: list[str] | None = None) -> pa.Table:
        """Read a table whole (appended or small), optionally only some columns."""
        if table_name in WHOLE_TABLES:
            schema = WHOLE_TABLES[table_name]
            path = f"{self.root}/{table_name}.parquet"
            if not self.exists(f"{table_name}.parquet"):
                empty = pa.Table.from_batches([], schema=schema)
                return empty.select(columns) if columns else empty
            try:
                return pq.read_table(path, filesystem=self.fs, columns=columns)
            except (pa.ArrowInvalid, OSError) as exc:
                # Arrow prefixes "Could not open Parquet input source '<path>': "; the
                # message names the path once.
                reason = first_line(exc).removeprefix(
                    f"Could not open Parquet input source '{path}': "
                )
                raise DataError(
                    f"{path} is not a readable Parquet file ({reason}): {restore_fix(path)}"
                ) from None
        try:
            return self.dataset(table_name).to_table(columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(
                f"{self.root}/{table_name}/ has a part file that cannot be read "
                f"({first_line(exc)}): {restore_fix('the damaged file')}, or move it out of the "
                "folder"
            ) from None

    def text(self, name: str) -> str | None:
        if not self.exists(name):
            return None
        with self.fs.open_input_stream(f"{self.root}/{name}") as stream:
            return bytes(stream.read()).decode("utf-8")

    def versions(self) -> dict[str, object]:
        """``versions.json``: the machine and package versions the sweep ran with (JSON)."""
        try:
            raw = self.text("versions.json")
            data = json.loads(raw) if raw else {}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(
                f"{self.uri}/versions.json cannot be read ({first_line(exc)}): {VERSIONS_FIX}"
            ) from None
        if not isinstance(data, dict):
            raise DataError(f"{self.uri}/versions.json is not a JSON object: {VERSIONS_FIX}")
        return data


def open_results(uri: str | os.PathLike[str]) -> Results:
    """Open a results folder for reading; :class:`DataError` if it is not one."""
    fs, root = resolve(uri)
    if is_remote(uri) and not root.strip("/"):
        scheme = os.fspath(uri).split("://", 1)[0]
        raise DataError(
            f"{os.fspath(uri)} names no bucket: give {scheme}://BUCKET/PATH, the folder "
            "`memsweep run` wrote"
        )
    results = Results(uri=os.fspath(uri), fs=fs, root=root)
    try:
        info = fs.get_file_info(root)
    except OSError as exc:  # a storage endpoint that refuses or drops the connection
        raise DataError(
            f"{os.fspath(uri)} cannot be read ({first_line(exc)}): check that its storage "
            "can be reached from here (endpoint, network, credentials)"
        ) from None
    if info.type == pafs.FileType.NotFound:
        raise _not_found(uri, fs, root)
    if not (results.exists("trials.parquet") or results.exists("samples")):
        raise DataError(
            f"{os.fspath(uri)} is not a memsweep results folder (no trials.parquet, no "
            "samples/). Point at results/<sweep-name>, made by `memsweep run`."
        )
    version = results.versions().get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise DataError(
            f"{os.fspath(uri)} was written by a newer memsweep (schema {version}; this "
            f"one reads up to {SCHEMA_VERSION}). Upgrade memsweep to read it."
        )
    return results


def _not_found(uri: str | os.PathLike[str], fs: pafs.FileSystem, root: str) -> DataError:
    """The refusal of a location that is not there. For a remote one, whether its bucket
    is: pyarrow's S3 filesystem answers "not found" (not an error) when the endpoint
    cannot be reached at all, so a missing bucket and a wrong ``endpoint_override`` look
    the same, and neither is a missing folder."""
    bucket = root.split("/", 1)[0]
    if not is_remote(uri) or not bucket:
        return no_such_folder(uri)
    try:
        there = fs.get_file_info(bucket).type != pafs.FileType.NotFound
    except OSError:
        there = False
    if there:
        return no_such_folder(uri)
    scheme = os.fspath(uri).split("://", 1)[0]
    return DataError(
        f"No such results folder: {os.fspath(uri)}: its bucket {scheme}://{bucket} is not "
        "there or its storage cannot be reached from here: check the bucket name, the "
        "endpoint (endpoint_override), the network and the credentials"
    )


def latest_attempts(table: pa.Table, trials: pa.Table) -> pa.Table:
    """The rows of ``table`` (samples or progress) from each trial's latest attempt.

    A resumed sweep restarts its interrupted trials; the rows of their earlier attempt
    stay in the dataset (nothing is ever rewritten) under the earlier ``run_id``, and
    ``trials.parquet`` names the latest. Kept: rows of that run, rows of no trial (Ray's
    own processes, the driver), and rows without a ``run_id`` (written before it existed).
    """
    import pyarrow.compute as pc

    if "run_id" not in table.column_names or "run_id" not in trials.column_names:
        return table
    known = trials.select(["trial_id", "run_id"]).filter(pc.is_valid(trials["run_id"]))
    if known.num_rows == 0:
        return table
    where = pc.index_in(table["trial_id"], value_set=known["trial_id"])
    expected = pc.take(known["run_id"], where)
    run_id = table["run_id"]
    keep = pc.or_kleene(
        pc.or_kleene(pc.is_null(expected), pc.is_null(run_id)), pc.equal(run_id, expected)
    )
    return table.filter(keep)
