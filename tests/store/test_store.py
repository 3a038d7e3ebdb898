"""Parquet on disk (or S3) is always complete, and every dataframe tool reads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest

from memsweep.errors import DataError
from memsweep.store import SAMPLES, ResultsWriter, open_results

REPO = Path(__file__).resolve().parents[2]


def sample_rows(n: int, trial: str = "t1") -> list[dict[str, object]]:
    return [
        {
            "ts": 1_700_000_000_000_000 + i * 100_000,
            "node_id": "n1",
            "pid": 10,
            "role": "trainable",
            "trial_id": trial,
            "rss_bytes": 1000 + i,
            "hwm_bytes": 2000 + i,
        }
        for i in range(n)
    ]


def test_appended_parts_read_back_with_pyarrow_pandas_and_duckdb(tmp_path: Path) -> None:
    # GIVEN a writer that appended three flushes
    writer = ResultsWriter(tmp_path / "sweep")
    for _ in range(3):
        writer.append_rows("samples", sample_rows(5))
    writer.replace("trials", [{"trial_id": "t1", "replay_capacity": 1000, "status": "terminated"}])
    root = tmp_path / "sweep"
    # THEN each tool reads the same 15 rows with no extra set-up
    assert ds.dataset(root / "samples", format="parquet").count_rows() == 15
    assert len(pd.read_parquet(root / "samples")) == 15
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{root}/samples/*.parquet')").fetchall()
    assert count == [(15,)]
    assert open_results(root).table("samples").schema.equals(SAMPLES, check_metadata=False)
    assert open_results(root).table("trials").to_pylist()[0]["replay_capacity"] == 1000


def test_no_temporary_file_is_left_and_none_is_visible_to_readers(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "s")
    writer.append_rows("samples", sample_rows(3))
    names = [p.name for p in (tmp_path / "s" / "samples").iterdir()]
    assert names and all(n.startswith("part-") and n.endswith(".parquet") for n in names)


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "s")
    bad = sample_rows(2)
    bad[0]["pid"] = "not a pid"
    with pytest.raises((TypeError, ValueError, Exception)):
        writer.append_rows("samples", bad)
    assert list((tmp_path / "s" / "samples").iterdir()) == []


def test_a_folder_that_is_not_a_sweep_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No such results folder"):
        open_results(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a memsweep results folder"):
        open_results(tmp_path / "empty")


def test_a_remote_location_not_there_says_whether_its_bucket_is(
    s3_uri: Callable[[str], str], s3_endpoint: str
) -> None:
    # GIVEN a real S3 API with a bucket "sweeps": a missing folder in it is just missing
    with pytest.raises(DataError, match="No such results folder") as missing:
        open_results(s3_uri("nothing/here"))
    assert "bucket" not in str(missing.value)
    # AND a missing bucket names the bucket and what to check (pyarrow answers "not found"
    # for it, not an error, as it does for an endpoint with no route to it)
    with pytest.raises(DataError, match="its bucket s3://no-such-bucket is not there") as exc:
        open_results(s3_uri("x").replace("s3://sweeps/", "s3://no-such-bucket/"))
    assert "endpoint_override" in str(exc.value)
    # AND so does an address that is the missing bucket alone
    with pytest.raises(DataError, match="its bucket s3://no-such-bucket is not there"):
        open_results(s3_uri("").replace("s3://sweeps/", "s3://no-such-bucket"))
    # AND an endpoint that refuses the connection is an error of its own, named as such
    with pytest.raises(DataError, match="check that its storage can be reached"):
        open_results(s3_uri("x").replace(s3_endpoint, "127.0.0.1:9"))  # the discard port


@pytest.mark.parametrize(
    ("uri", "seconds"),
    [
        ("gs://b/p", 20),
        ("gcs://b/p?endpoint_override=localhost:4443", 20),
        ("gs://b/p?retry_limit_seconds=300", 300),
    ],
)
def test_a_gcs_location_gives_up_after_seconds_not_fifteen_minutes(uri: str, seconds: int) -> None:
    # GIVEN a gs:// results address (pyarrow's GCS client retries for 15 minutes unless
    # told otherwise: without credentials `memsweep analyze gs://…` said nothing that long)
    from memsweep.store import resolve

    # WHEN memsweep opens its filesystem
    fs, path = resolve(uri)
    # THEN requests give up after 20 s, or after what the address itself sets
    options = fs.__reduce__()[1][0]  # GcsFileSystem keeps its options only for pickling
    assert options["retry_time_limit"].total_seconds() == seconds
    assert path == "b/p"


def test_results_from_a_newer_memsweep_are_refused(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "s")
    writer.replace("trials", [{"trial_id": "t"}])
    writer.write_text("versions.json", json.dumps({"schema_version": 99}))
    with pytest.raises(DataError, match="newer memsweep"):
        open_results(tmp_path / "s")


def test_an_unwritable_results_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="Cannot create the results folder"):
        ResultsWriter(blocker / "sweep")


def test_results_on_s3_are_written_and_read_through_pyarrow_fs(
    s3_uri: Callable[[str], str],
) -> None:
    uri = s3_uri("demo")
    writer = ResultsWriter(uri)
    writer.append_rows("samples", sample_rows(4))
    writer.replace("trials", [{"trial_id": "t1"}])
    results = open_results(uri)
    assert results.table("samples").num_rows == 4
    assert results.table("trials").num_rows == 1


def test_the_documented_schema_is_the_schema_the_code_writes() -> None:
    from memsweep.store import schema_markdown

    documented = (Path(__file__).resolve().parents[2] / "docs" / "schema.md").read_text()
    assert documented.strip() == schema_markdown().strip(), "regenerate docs/schema.md"


def test_the_trial_peak_is_the_largest_pss_sum_and_keeps_rss_and_hwm_beside_it() -> None:
    from datetime import UTC, datetime

    import pyarrow as pa

    from memsweep.store import SAMPLES
    from memsweep.store.peaks import trial_peaks, trial_peaks_arrow

    # GIVEN two processes of one trial sampled in two rounds a second apart; in the
    # second both map a shared 400 MB (PSS 200 MB each), and one spiked to 900 MB between
    rounds = [
        # (second, pid, rss, pss, hwm)
        (0, 1, 100, 100, 100),
        (0, 2, 100, 100, 100),
        (1, 1, 500, 300, 900),
        (1, 2, 500, 300, 500),
    ]
    n = len(rounds)
    columns: dict[str, object] = {name: [None] * n for name in SAMPLES.names}
    columns.update(
        ts=[datetime(2026, 1, 1, 0, 0, r[0], tzinfo=UTC) for r in rounds],
        node_id=["n"] * n,
        pid=[r[1] for r in rounds],
        create_time=[1.0] * n,
        trial_id=["t"] * n,
        role=["trainable"] * n,
        rss_bytes=[r[2] * 10**6 for r in rounds],
        pss_bytes=[r[3] * 10**6 for r in rounds],
        hwm_bytes=[r[4] * 10**6 for r in rounds],
    )
    table = pa.Table.from_pydict(columns, schema=SAMPLES)
    peak = trial_peaks(table)["t"]
    # THEN the peak counts the shared pages once, RSS twice, and VmHWM shows the spike
    assert (peak.peak_bytes, peak.peak_rss_bytes, peak.hwm_bytes, peak.processes) == (
        600 * 10**6,
        1000 * 10**6,
        1400 * 10**6,
        2,
    )
    # AND the Arrow twin the driver uses gives the same
    assert trial_peaks_arrow(table) == {"t": peak}


RUNS_WITH_SAMPLES = sorted(
    {path.parent for path in (REPO / "results").glob("**/samples") if path.is_dir()}
)


@pytest.mark.parametrize("run", RUNS_WITH_SAMPLES, ids=lambda p: p.name)
def test_the_drivers_arrow_peaks_equal_the_duckdb_query_on_committed_runs(run: Path) -> None:
    # GIVEN a committed real run's samples (every trial, incomplete PSS rounds included)
    from memsweep.store.peaks import trial_peaks, trial_peaks_arrow

    samples = open_results(str(run)).dataset("samples").to_table()
    # THEN the live peaks the collector computes in Arrow are the query's, trial by trial
    expected = trial_peaks(samples)
    assert expected
    assert trial_peaks_arrow(samples) == expected
