"""Overhead A/B: a fixed-work trial's throughput with memsweep's sampler on and off.

The throughput medians of ``bench_overhead`` (a real DQN, a few repeats) cannot tell 1%
from 10% on a shared 2-core machine. Here many short runs of a known-answer trainable
are paired instead: each pair is one run without any monitor and one with memsweep's
:class:`~memsweep.collect.callback.MemoryCallback` sampling at 10 Hz (USS/PSS every
second), in alternating order (off-on, on-off, …) so that drift hits both sides alike.

The trainable (:func:`fixed_work_trial`) does the same work in every step: a chain of
SHA-256 digests over a 1 MB buffer, single-threaded, whose final digest is the known
answer (every run must give the same one, proving the same work was done). Throughput is
digests per second of the trainable's own measured work time (``time.perf_counter``
around the work only), after warm-up steps. With the sampler on, the trainable first
waits until the sampler actor's process (``ray::NodeSampler``) runs on its node, so that
the sampler's start (imports, on a loaded machine several seconds of CPU) is not
counted as its steady cost; the sampler then reads the trainable too. The figure is the ratio on/off per pair; its 95% interval is Student's t on the
pairs' log ratios (``scipy.stats.ttest_1samp(...).confidence_interval``), back-transformed
(a geometric mean ratio). Goal: ≥ 0.99 (≤ 1% loss), met when the interval's low end is
at or above 0.99.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path
from typing import Any

from benchlib import Profile, Row, Stat, Timer, fit_one_trial, log

GOAL_RATIO = 0.99
BUFFER_BYTES = 1 << 20
PAIRS = {"smoke": 2, "default": 60, "full": 120}
"""On/off pairs by profile (``MEMSWEEP_BENCH_AB_PAIRS`` overrides)."""
STEPS = 6
WARMUP_STEPS = 1
DIGESTS_PER_STEP = 200
"""About 0.4 s of work per step on this machine (SHA-256 runs at ~500 MB/s per core)."""


def fixed_work_trial(config: dict[str, Any]) -> None:
    """Tune function trainable: ``STEPS`` steps of ``digests`` chained SHA-256 digests;
    reports the work's own seconds and the chain's final digest (the known answer)."""
    from ray import tune

    if config.get("wait_for_sampler"):
        _wait_for_sampler(timeout_s=120.0)
    block = bytearray(BUFFER_BYTES)
    digest = b""
    for _ in range(config["steps"]):
        started = time.perf_counter()
        for _ in range(config["digests"]):
            digest = hashlib.sha256(digest + block).digest()
        tune.report({"work_s": time.perf_counter() - started, "digest": digest.hex()})


def _wait_for_sampler(timeout_s: float) -> None:
    """Until a ``ray::NodeSampler`` process has run for a second (RuntimeError after
    ``timeout_s``)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in psutil.process_iter(["cmdline", "create_time"]):
            cmdline = process.info["cmdline"] or []
            if cmdline and cmdline[0].startswith("ray::NodeSampler"):
                time.sleep(max(0.0, process.info["create_time"] + 1.0 - time.time()) + 1.0)
                return
        time.sleep(0.2)
    raise RuntimeError(f"no ray::NodeSampler process after {timeout_s:.0f} s")


def expected_digest(steps: int, digests: int) -> str:
    """The known answer: the same chain computed here."""
    block = bytes(BUFFER_BYTES)
    digest = b""
    for _ in range(steps * digests):
        digest = hashlib.sha256(digest + block).digest()
    return digest.hex()


def _one_run(monitored: bool, index: int, work: Path) -> tuple[float, str]:
    """One Tune run; digests per second over the steps after warm-up, and the digest."""
    import ray
    from ray import tune

    import bench_ab
    from memsweep.collect.callback import MemoryCallback
    from memsweep.spec import parse_study

    ray.cloudpickle.register_pickle_by_value(bench_ab)
    callback = None
    if monitored:
        study = parse_study(
            {
                "name": "bench-ab",
                "sampling": {"interval_s": 0.1, "full_interval_s": 1.0, "flush_interval_s": 2.0},
            }
        )
        callback = MemoryCallback.for_study(study, str(work / f"on-{index}"))
    frame = fit_one_trial(
        tune.with_resources(bench_ab.fixed_work_trial, {"cpu": 1}),
        {"steps": STEPS, "digests": DIGESTS_PER_STEP, "wait_for_sampler": monitored},
        name=f"{'on' if monitored else 'off'}-{index}",
        work=work,
        callback=callback,
        what=f"A/B run {index} ({'on' if monitored else 'off'})",
    )
    measured = frame["work_s"].to_numpy()[WARMUP_STEPS:]
    digests = DIGESTS_PER_STEP * len(measured)
    return digests / float(measured.sum()), str(frame["digest"].iloc[-1])


def ratio_interval(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean of paired ratios and its 95% t interval (on log ratios)."""
    from scipy import stats

    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / len(logs)
    interval = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    return math.exp(mean), math.exp(interval.low), math.exp(interval.high)


def run(profile: Profile, work: Path) -> tuple[list[Row], dict[str, Any]]:
    """``PAIRS[profile]`` interleaved on/off pairs (Ray must be up)."""
    timer = Timer()
    pairs = int(os.environ.get("MEMSWEEP_BENCH_AB_PAIRS") or PAIRS.get(profile.name, 20))
    answer = expected_digest(STEPS, DIGESTS_PER_STEP)
    on: list[float] = []
    off: list[float] = []
    for index in range(pairs):
        order = (False, True) if index % 2 == 0 else (True, False)
        for monitored in order:
            speed, digest = _one_run(monitored, index, work)
            if digest != answer:
                raise RuntimeError(
                    f"A/B run {index}: digest {digest[:12]}…, expected {answer[:12]}…"
                )
            (on if monitored else off).append(speed)
        log(f"overhead A/B: pair {index + 1}/{pairs}: on/off {on[-1] / off[-1]:.3f}")
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    details: dict[str, Any] = {"on": on, "off": off, "ratios": ratios, **timer.done()}
    if pairs < 2:
        return [], details
    mean, low, high = ratio_interval(ratios)
    details.update(geometric_mean=mean, ci95=(low, high))
    if low >= GOAL_RATIO:
        status: Any = "met"
        verdict = "the interval excludes a loss over 1%"
    elif high < GOAL_RATIO:
        status = "MISSED"
        verdict = "the interval shows a loss over 1%"
    else:
        status = "MISSED"
        verdict = "not shown: the interval still includes a loss over 1%"
    row = Row(
        key="overhead.ab_ratio",
        section="overhead",
        figure=f"fixed-work trial throughput, memsweep 10 Hz on ÷ off ({pairs} interleaved pairs)",
        tool="memsweep 10 Hz",
        unit="x",
        stat=Stat.of(ratios),
        ratio=mean,
        ratio_of=f"geometric mean; 95% t interval {low:.3f}–{high:.3f}",
        goal=f"≥ {GOAL_RATIO:.2f}× (≤ 1% loss), interval's low end",
        status=status,
        note=f"{verdict}; {STEPS - WARMUP_STEPS} measured steps of {DIGESTS_PER_STEP} SHA-256 "
        f"digests of 1 MB per run (known final digest checked), {WARMUP_STEPS} warm-up steps",
    )
    return [row], details
