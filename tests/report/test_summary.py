"""The end-of-run table: one peak (Σ PSS) with its unit, and the trials a time cap stopped."""

from __future__ import annotations

from types import SimpleNamespace

from memsweep import result_keys as keys
from memsweep.report.summary import TrialSummary, format_summaries
from memsweep.run.trainable import MemsweepTrainable


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
