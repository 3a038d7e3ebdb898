"""The end-of-run table: one peak (Σ PSS) with its unit, and the trials a time cap stopped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq

from memsweep import result_keys as keys
from memsweep.report.summary import (
    DriverPeak,
    TrialSummary,
    driver_peak_rss,
    format_driver_peak,
    format_summaries,
    trial_summaries,
)
from memsweep.run.trainable import MemsweepTrainable
from memsweep.store import open_results


def _summary(trial_id: str, stop_reason: str | None) -> TrialSummary:
    return TrialSummary(
        trial_id=trial_id,
        factors={"replay_capacity": 5000, "model": "64x64", "num_workers": 0, "framework": "torch"},
        status="terminated",
        stop_reason=stop_reason,
        processes=1,
        peak_bytes=541_000_000,
        peak_rss_bytes=814_000_000,
        hwm_bytes=2_150_000_000,
    )


def test_the_summary_prints_one_unit_and_names_the_trials_their_time_cap_stopped() -> None:
    text = format_summaries([_summary("a", keys.STOP_PLATEAU), _summary("b", keys.STOP_TIME_CAP)])
    lines = text.splitlines()
    assert "peak (Σ PSS)" in lines[0] and "Σ VmHWM" in lines[0]
    assert "541 MB" in lines[1] and "814 MB" in lines[1] and "2.15 GB" in lines[1]
    assert "GiB" not in text and "MiB" not in text
    assert lines[-1].startswith("1 trial(s) stopped by their time cap") and ": b;" in lines[-1]
    assert "time cap" not in format_summaries([_summary("a", keys.STOP_PLATEAU)])


def test_the_plateau_counts_env_steps_from_the_result_that_filled_the_buffer() -> None:
    # GIVEN a trainable's bookkeeping for a 5,000 buffer (the method reads only these)
    trial = SimpleNamespace(
        facts=SimpleNamespace(replay_capacity=5000), plateau_from_env_steps=None
    )
    count = MemsweepTrainable.plateau_env_steps
    # THEN nothing counts until 5,000 env steps were sampled, even with the buffer's
    # episode-granular count just under its capacity
    assert count(trial, 4096, 4096) == 0
    assert count(trial, 5120, 4968) == 0
    assert count(trial, 9216, 4968) == 4096
    # AND without a buffer the plateau starts at the first result
    no_buffer = SimpleNamespace(
        facts=SimpleNamespace(replay_capacity=None), plateau_from_env_steps=None
    )
    assert count(no_buffer, 4000, None) == 0
    assert count(no_buffer, 12000, None) == 8000


def test_the_driver_peak_is_the_largest_rss_of_the_driver_rows(tmp_path: Path) -> None:
    # GIVEN samples of a driver whose RSS rises to 280 MB and falls, next to a bigger trainable
    from memsweep.store import open_results
    from memsweep.store.schema import SAMPLES

    folder = tmp_path / "run" / "samples"
    folder.mkdir(parents=True)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "ts": start + timedelta(seconds=i),
            "pid": 7,
            "role": "driver",
            "rss_bytes": rss,
            "rss_anon_bytes": rss - 110_000_000,
            "rss_file_bytes": 110_000_000,
        }
        for i, rss in enumerate([200_000_000, 280_000_000, 250_000_000])
    ] + [{"ts": start, "pid": 8, "role": "trainable", "rss_bytes": 900_000_000}]
    filler = {pa.string(): "n", pa.int64(): 0, pa.int32(): 0, pa.float64(): 0.0, pa.bool_(): False}
    full = [
        {
            f.name: row.get(f.name, None if f.nullable else filler.get(f.type, start))
            for f in SAMPLES
        }
        for row in rows
    ]
    pq.write_table(pa.Table.from_pylist(full, schema=SAMPLES), folder / "part-0.parquet")
    results = open_results(str(tmp_path / "run"))
    # THEN the driver's peak is its largest row, within the goal
    peak = driver_peak_rss(results)
    assert peak == DriverPeak(280_000_000, 170_000_000, 110_000_000)
    line = format_driver_peak(peak)
    assert line.endswith("goal ≤ 300 MB: met)")
    assert "170 MB its own, 110 MB library files" in line
    assert format_driver_peak(DriverPeak(1_330_000_000, None, None)).endswith("MISSED)")
    # AND the whole command's VmHWM (compacting and summarising once the trials have
    # ended) is said after it, without changing the verdict on the sampled peak
    whole = format_driver_peak(peak, 329_000_000)
    assert whole.startswith(line) and whole.endswith("this summary: 329 MB (VmHWM)")
    # AND without driver rows there is no figure, and the line says why
    (folder / "part-0.parquet").unlink()
    pq.write_table(pa.Table.from_pylist(full[3:], schema=SAMPLES), folder / "part-0.parquet")
    assert driver_peak_rss(open_results(str(tmp_path / "run"))) is None
    assert "not sampled" in format_driver_peak(None)


RESULTS = Path(__file__).resolve().parents[2] / "results"
"""The committed runs."""


def test_a_factor_beyond_the_built_ins_has_its_own_column() -> None:
    # GIVEN the committed PPO sweep over train_batch_size_per_learner (an rllib factor)
    table = format_summaries(trial_summaries(open_results(RESULTS / "reference-ppo-train-batch")))
    header, *rows = table.splitlines()
    # THEN the table has its column, after the built-ins, with each trial's value as written
    columns = header.split()
    assert columns.index("train_batch_size_per_learner") == columns.index("framework") + 1
    values = [row.split()[5] for row in rows]
    assert values == ["500", "2000", "4000", "500", "8000"]


def test_a_failed_trial_is_followed_by_the_line_that_says_why() -> None:
    # GIVEN the committed loaded run, whose first trial was killed before it ran
    table = format_summaries(trial_summaries(open_results(RESULTS / "reference-loaded")))
    # THEN after the table, one line names the trial, its status and Ray's reason (not
    # Ray's "ip: 127.0.0.1" field line that opens the recorded error)
    assert table.splitlines()[-1] == (
        "9f6fa_00000 error: The actor is dead because it was killed by `ray.kill`."
    )


def test_a_traceback_is_told_by_its_exception_line() -> None:
    from memsweep.report.summary import _first_line

    traceback = (
        'Traceback (most recent call last):\n  File "corridor.py", line 3, in reset\n'
        "ray.exceptions.RayTaskError(ValueError): ray::MemsweepTrainable.train()\n"
        "ValueError: size 16 is above 10"
    )
    assert _first_line(traceback) == "ValueError: size 16 is above 10"
    assert _first_line("") is None
