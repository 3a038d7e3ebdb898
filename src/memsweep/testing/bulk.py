"""A big synthetic sweep for the analysis benchmark (``benchmarks/bench_analysis.py``):
millions of sample rows with the real schema, written through ``ResultsWriter`` in chunks.

The same kind of sweep as :func:`memsweep.testing.synthetic.write_sweep` (same epoch,
same table completion), built for size: a fixed 24-trial design, plain linear memory
(trainable base + 16 B × params + 8,300 B per stored transition; env runners 250/420 MB
+ 4 B × params), no planted leaks or spikes, strings dictionary-encoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from memsweep.store import PROGRESS, SAMPLES
from memsweep.testing.synthetic import EPOCH_US, complete_table, new_results

INTERVAL_S = 0.1
FULL_EVERY = 10
CHUNK_ROUNDS = 100_000
DESIGN = [
    (cap, model, workers, framework)
    for cap in (100_000, 300_000, 1_000_000)
    for model in (("256x256", 329_000), ("1024x1024", 2_100_000))
    for workers in (1, 4)
    for framework in ("torch", "tf2")
]


def _strings(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([value])).cast(
        pa.string()
    )


def write_bulk_sweep(path: Path, rows: int, seed: int = 0) -> int:
    """Write a sweep of ``len(DESIGN)`` trials with about ``rows`` sample rows (chunks of
    :data:`CHUNK_ROUNDS` rounds, so 10M rows fit in memory).

    Returns the number of sample rows written."""
    rng = np.random.default_rng(seed)
    writer = new_results(path, "name: bench", INTERVAL_S, FULL_EVERY)
    processes = [1 + w + 2 for _, _, w, _ in DESIGN]  # + 2 system processes sampled alongside
    rounds = max(rows // sum(processes), 50)
    written = 0
    trial_rows = []
    start_s = 0.0
    for index, (cap, (label, params), workers, framework) in enumerate(DESIGN):
        trial_id = f"bench_{index:03d}"
        steps_per_s = cap / (0.4 * rounds * INTERVAL_S)  # the buffer fills in 40 % of the run
        base = 900e6 + (300e6 if framework != "torch" else 0) + 16 * params
        runner = (250e6 if framework == "torch" else 420e6) + 4 * params
        roles = ["trainable"] + ["env_runner"] * workers + ["ray_system", "driver"]
        for first in range(0, rounds, CHUNK_ROUNDS):
            k = np.arange(first, min(first + CHUNK_ROUNDS, rounds))
            t = k * INTERVAL_S
            stored = np.minimum(t * steps_per_s, cap)
            full = (k % FULL_EVERY) == 0
            parts = []
            for pid, role in enumerate(roles):
                n = len(k)
                if role == "trainable":
                    private = base + 8_300 * stored
                elif role == "env_runner":
                    private = np.full(n, runner)
                else:
                    private = np.full(n, 150e6 if role == "ray_system" else 300e6)
                private = private + rng.normal(0, 2e6, n)
                rss = (private + 100e6).astype(np.int64)
                pss = pa.array((private + 30e6).astype(np.int64), mask=~full)
                in_trial = role not in ("ray_system", "driver")
                parts.append(
                    complete_table(
                        {
                            "ts": pa.array(
                                EPOCH_US + np.round((start_s + t) * 1e6).astype(np.int64)
                            ).cast(SAMPLES.field("ts").type),
                            "node_id": _strings("node0", n),
                            "pid": pa.array(np.full(n, 10_000 * index + pid, dtype=np.int32)),
                            "create_time": pa.array(np.full(n, 1.75e9 + start_s)),
                            "trial_id": _strings(trial_id, n)
                            if in_trial
                            else pa.nulls(n, pa.string()),
                            "role": _strings(role, n),
                            "rss_bytes": pa.array(rss),
                            "hwm_bytes": pa.array(np.maximum.accumulate(rss)),
                            "pss_bytes": pss,
                            "uss_bytes": pss,
                        },
                        SAMPLES,
                        n,
                    )
                )
            table = pa.concat_tables(parts)
            writer.append("samples", table)
            written += table.num_rows
        p_t = np.arange(1.0, rounds * INTERVAL_S, 1.0)
        p_steps = p_t * steps_per_s
        writer.append(
            "progress",
            complete_table(
                {
                    "ts": pa.array(
                        EPOCH_US + np.round((start_s + p_t) * 1e6).astype(np.int64)
                    ).cast(PROGRESS.field("ts").type),
                    "trial_id": _strings(trial_id, len(p_t)),
                    "iteration": pa.array(np.arange(1, len(p_t) + 1)),
                    "env_steps": pa.array(p_steps.astype(np.int64)),
                    "replay_size": pa.array(np.minimum(p_steps, cap).astype(np.int64)),
                },
                PROGRESS,
                len(p_t),
            ),
        )
        trial_rows.append(
            {
                "trial_id": trial_id,
                "study": "bench",
                "algorithm": "DQN",
                "replay_capacity": cap,
                "model": label,
                "num_workers": workers,
                "framework": framework,
                "model_params": params,
                "obs_bytes": 4096,
                "built_replay_capacity": cap,
                "status": "terminated",
            }
        )
        start_s += rounds * INTERVAL_S + 5
    writer.replace("trials", trial_rows)
    return written
