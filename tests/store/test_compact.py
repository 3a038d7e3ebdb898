"""Compaction: thousands of part files become a few, readable by every tool, and a kill at
any moment neither loses a row nor (for memsweep's readers) counts one twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from memsweep.errors import DataError
from memsweep.store import ResultsWriter, open_results
from memsweep.store.compact import compact_results, write_compacted

SRC = str(Path(__file__).resolve().parents[2] / "src")


def sample_rows(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {
            "ts": 1_700_000_000_000_000 + (start + i) * 100_000,
            "node_id": "n1",
            "pid": 10 + (start + i) % 7,
            "role": "trainable",
            "trial_id": "t1",
            "rss_bytes": 1000 + start + i,
            "hwm_bytes": 2000 + start + i,
        }
        for i in range(n)
    ]


def make_sweep(root: Path | str, parts: int, rows: int) -> ResultsWriter:
    writer = ResultsWriter(root)
    writer.replace("trials", [{"trial_id": "t1", "status": "terminated"}])
    for index in range(parts):
        writer.append_rows("samples", sample_rows(rows, start=index * rows))
        writer.append_rows("events", [{"ts": 1_700_000_000_000_000 + index, "kind": "gap"}])
    return writer


def parquet_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".parquet"))


def glob_count(folder: Path) -> int:
    return int(duckdb.sql(f"SELECT count(*) FROM '{folder}/*.parquet'").fetchall()[0][0])


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC}


def test_a_sweeps_parts_become_one_file_per_table_that_every_reader_reads(tmp_path: Path) -> None:
    # GIVEN a sweep that flushed 40 times
    root = tmp_path / "sweep"
    make_sweep(root, parts=40, rows=25)
    before = open_results(root).table("samples").sort_by("ts")
    # WHEN it is compacted
    done = compact_results(root)
    # THEN each table is one file, with the same rows for memsweep, duckdb and pyarrow
    assert parquet_names(root / "samples")[0].startswith("compact-")
    assert len(parquet_names(root / "samples")) == 1
    assert len(parquet_names(root / "events")) == 1
    assert open_results(root).table("samples").sort_by("ts").equals(before)
    assert glob_count(root / "samples") == 1000
    assert ds.dataset(root / "samples", format="parquet").count_rows() == 1000
    by_table = {t.table: t for t in done.tables}
    assert (by_table["samples"].files_before, by_table["samples"].files_after) == (40, 1)
    assert by_table["samples"].rows == 1000
    assert "samples: 40 → 1 files" in done.summary()


def test_compacting_again_merges_new_parts_and_otherwise_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    writer = make_sweep(root, parts=5, rows=10)
    compact_results(root)
    first = parquet_names(root / "samples")
    compact_results(root)
    assert parquet_names(root / "samples") == first
    # a resumed sweep appends more parts to a compacted folder
    writer.append_rows("samples", sample_rows(10, start=50))
    writer.append_rows("samples", sample_rows(10, start=60))
    compact_results(root)
    assert len(parquet_names(root / "samples")) == 1
    assert parquet_names(root / "samples") != first
    assert glob_count(root / "samples") == 70
    assert open_results(root).table("samples").num_rows == 70


def test_a_target_size_splits_the_output_into_a_few_files(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    make_sweep(root, parts=12, rows=50)
    part_size = max(p.stat().st_size for p in (root / "samples").iterdir())
    compact_results(root, target_bytes=4 * part_size)
    assert 3 <= len(parquet_names(root / "samples")) <= 4
    assert open_results(root).table("samples").num_rows == 600
    assert glob_count(root / "samples") == 600


def test_a_kill_after_writing_the_compacted_file_counts_no_row_twice(tmp_path: Path) -> None:
    # GIVEN a compaction killed (SIGKILL) after its compacted file is in place, before it
    # deleted the parts that file covers
    root = tmp_path / "sweep"
    make_sweep(root, parts=20, rows=10)
    script = (
        "import os, signal, sys\n"
        "import pyarrow.fs as pafs\n"
        "from memsweep.store.compact import write_compacted\n"
        "write_compacted(pafs.LocalFileSystem(), sys.argv[1], 'samples')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(root / "samples")], env=env(), check=False
    )
    assert killed.returncode == -signal.SIGKILL
    names = parquet_names(root / "samples")
    assert len(names) == 21 and names[0].startswith("compact-")
    # THEN memsweep's readers count every row once; a plain glob sees both copies
    assert open_results(root).table("samples").num_rows == 200
    assert glob_count(root / "samples") == 400
    # AND `memsweep compact` finishes the job
    done = subprocess.run(
        [sys.executable, "-m", "memsweep", "compact", str(root)],
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "samples: 21 → 1 files" in done.stdout
    assert glob_count(root / "samples") == 200
    assert open_results(root).table("samples").num_rows == 200


def test_compactions_sigkilled_at_random_moments_never_lose_or_double_a_row(
    tmp_path: Path,
) -> None:
    # GIVEN a folder big enough that compacting it takes a while
    root = tmp_path / "sweep"
    make_sweep(root, parts=150, rows=2000)
    expected = open_results(root).table("samples").num_rows
    rng = random.Random(16)
    script = "import sys; from memsweep.store.compact import compact_results; compact_results(sys.argv[1])"
    # WHEN compactions are killed at random moments, then one runs to the end
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", script, str(root)], env=env())
        time.sleep(rng.uniform(0.4, 1.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # THEN after every kill memsweep reads every row exactly once
        assert open_results(root).table("samples").num_rows == expected
    compact_results(root)
    assert len(parquet_names(root / "samples")) == 1
    assert not [p for p in (root / "samples").iterdir() if p.name.startswith(".")]
    assert glob_count(root / "samples") == expected


def test_a_damaged_part_stops_compaction_with_nothing_changed(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    make_sweep(root, parts=4, rows=5)
    damaged = sorted((root / "samples").glob("part-*.parquet"))[1]
    damaged.write_bytes(damaged.read_bytes()[:40])
    names = parquet_names(root / "samples")
    with pytest.raises(DataError, match=r"Cannot compact .*samples/: .*Nothing was changed"):
        compact_results(root)
    assert parquet_names(root / "samples") == names


def test_compact_on_a_folder_that_is_not_a_sweep_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memsweep", "compact", str(tmp_path / "nope")],
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == DataError.exit_code
    assert done.stderr.strip() == f"memsweep: No such results folder: {tmp_path / 'nope'}"


def test_results_on_s3_compact_through_pyarrow_fs(s3_uri: Callable[[str], str]) -> None:
    uri = s3_uri("compact-demo")
    make_sweep(uri, parts=6, rows=10)
    results = open_results(uri)
    assert len(results.files("samples")) == 6
    # a compaction interrupted between its steps: the reader still counts rows once
    write_compacted(results.fs, f"{results.root}/samples", "samples")
    assert open_results(uri).table("samples").num_rows == 60
    done = compact_results(uri)
    assert {t.table: t.files_after for t in done.tables}["samples"] == 1
    assert len(open_results(uri).files("samples")) == 1
    assert open_results(uri).table("samples").num_rows == 60
