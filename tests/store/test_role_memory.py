"""Per-role memory (the trackers' ``memory/<role>/*`` keys) from samples: the peak's rule
(Σ PSS of the processes at one moment, only rounds where each has a PSS reading) per role."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from memsweep.store.peaks import role_memory

T0 = datetime(2026, 11, 30, 3, 0, 0)
MB = 10**6


def samples(rows: list[tuple[float, str, int, int | None]]) -> pa.Table:
    """(seconds, role, pid, pss_bytes) rows of one trial on one node."""
    return pa.Table.from_pylist(
        [
            {
                "trial_id": "t0",
                "node_id": "n0",
                "ts": T0 + timedelta(seconds=s),
                "role": role,
                "pid": pid,
                "pss_bytes": pss,
            }
            for s, role, pid, pss in rows
        ]
    )


def test_each_role_has_its_own_latest_and_largest_sum_of_pss() -> None:
    table = samples(
        [
            (0.0, "trainable", 1, 500 * MB),
            (0.0, "env_runner", 2, 300 * MB),
            (0.0, "env_runner", 3, 310 * MB),
            (1.0, "trainable", 1, 700 * MB),
            (1.0, "env_runner", 2, 320 * MB),
            (1.0, "env_runner", 3, 330 * MB),
            (2.0, "trainable", 1, 650 * MB),
            # A new env runner without a PSS reading yet: this round is not counted.
            (2.0, "env_runner", 2, 900 * MB),
            (2.0, "env_runner", 4, None),
        ]
    )
    found = role_memory(table)
    trainable, runners = found[("t0", "trainable")], found[("t0", "env_runner")]
    assert (trainable.current_bytes, trainable.peak_bytes) == (650 * MB, 700 * MB)
    assert (runners.current_bytes, runners.peak_bytes) == (650 * MB, 650 * MB)
