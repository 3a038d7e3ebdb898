"""The README's first screen shows output a reader can reproduce from committed data.

Its two blocks are the end-of-run table of ``make sweep`` and what ``memsweep analyze``
printed, both on the committed reference run ``results/reference-default``. This test
derives both again from that run and compares them with the README, line by line; only
the measured analysis time ("in 0.8 s") may differ.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from memsweep.report.summary import format_summaries, trial_summaries
from memsweep.store import open_results
from memsweep.units import Estimate, format_bytes

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "results" / "reference-default"
README = REPO / "README.md"
_TIME = re.compile(r"\bin \d+(?:\.\d+)? s\b")


def readme_block(marker: str) -> list[str]:
    """The lines of the fenced block that follows ``<!-- marker -->`` in the README."""
    text = README.read_text()
    start = text.index(f"<!-- {marker} -->")
    fence = text.index("```", start)
    body_start = text.index("\n", fence) + 1
    body_end = text.index("```", body_start)
    return text[body_start:body_end].rstrip("\n").splitlines()


def test_the_readme_run_table_is_the_committed_reference_runs() -> None:
    # GIVEN the committed reference run of the default sweep
    shown = readme_block("reference:run")
    # WHEN its end-of-run table is derived again
    derived = format_summaries(trial_summaries(open_results(REFERENCE))).splitlines()
    # THEN the README shows exactly that table (after its first line, the run's header)
    assert shown[1:] == derived


@pytest.mark.medium
def test_the_readme_analysis_is_what_analyze_prints_on_the_reference_run(tmp_path: Path) -> None:
    shown = readme_block("reference:analyze")
    # WHEN memsweep analyze runs on the committed reference run
    done = subprocess.run(
        [sys.executable, "-m", "memsweep", "analyze", str(REFERENCE), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.rstrip("\n").splitlines()
    # THEN the README shows what it printed (the command line's path and the report's
    # folder are the reader's own; the analysis time is measured afresh)
    assert len(shown) == len(printed) - 1  # the README leaves out the "report: …" line
    for mine, theirs in zip(shown, printed, strict=False):
        assert _TIME.sub("in … s", mine) == _TIME.sub("in … s", theirs)


PPO_REFERENCE = REPO / "results" / "reference-ppo-train-batch"
"""``sweeps/examples/ppo_train_batch.yaml`` as run on 2026-11-30 (load average 5-7)."""


@pytest.mark.medium
def test_the_readme_ppo_batch_figures_are_the_committed_ppo_run() -> None:
    from memsweep.analyze import analyze_results

    # WHEN the committed PPO train-batch run is analysed again
    models = analyze_results(PPO_REFERENCE).models
    name = "bytes_per_unit[train_batch_size_per_learner]"
    plateau, peak = (
        next(e for e in models.models[q].effects if e.name == name) for q in ("plateau", "peak")
    )
    # THEN the batch's cost is resolved at the peak, far more tightly than on the plateau
    # (a sawtooth's time average), and the README quotes both as analyze prints them
    assert peak.estimate.low > 0
    assert (
        peak.estimate.high - peak.estimate.low < (plateau.estimate.high - plateau.estimate.low) / 2
    )

    def quoted(estimate: Estimate) -> str:
        low, high = (format_bytes(v) for v in (estimate.low, estimate.high))
        return (
            f"{format_bytes(estimate.value)} per unit of batch at the {{}} (95% CI {low} – {high})"
        )

    text = " ".join(README.read_text().split())
    assert quoted(peak.estimate).format("peak") in text
    assert quoted(plateau.estimate).format("plateau") in text


def test_the_readme_benchmark_table_is_the_committed_bench_run() -> None:
    # Every figure of the README's benchmark table is one the committed `make bench` run
    # on the reference machine measured (benchmarks/readme_block.py renders it).
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import readme_block
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    readme = (REPO / "README.md").read_text()
    assert readme_block.block() in readme, "run python benchmarks/readme_block.py"
