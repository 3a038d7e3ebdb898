"""One peak per trial: what the analysis writes (``models.json``, ``report.md``) is the
figure of :mod:`memsweep.store.peaks`, the one the end-of-run table prints, on committed
runs. ``framework_eager`` is a run where a bucket's sum of per-process means once
exceeded every one-moment Σ PSS (trials 646a1_00006/7: 1.26 GB against 1.24 GB), and
the analysis printed the larger; ``reference-ppo-train-batch`` varies the train batch,
whose memory comes and goes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memsweep.analyze import analyze_results
from memsweep.report.document import write_report
from memsweep.store import open_results
from memsweep.store.peaks import trial_peaks
from memsweep.units import format_bytes

REPO = Path(__file__).resolve().parents[2]
RUNS = ("claims-2cpu-24gb/framework_eager", "reference-ppo-train-batch")


@pytest.mark.parametrize("run", RUNS)
def test_every_per_trial_peak_the_analysis_prints_is_the_store_peak(
    run: str, tmp_path: Path
) -> None:
    # GIVEN a committed run, its peaks by the one rule (what `memsweep run` prints at the end)
    folder = REPO / "results" / run
    peaks = trial_peaks(open_results(folder).dataset("samples"))
    # WHEN it is analysed and its report written
    analysis = analyze_results(folder)
    files = write_report(analysis, tmp_path)
    document = json.loads(files.models_json.read_text(encoding="utf-8"))
    report = files.markdown.read_text(encoding="utf-8")
    assert {t["trial_id"] for t in document["trials"]} == set(peaks)
    for trial in document["trials"]:
        expected = peaks[trial["trial_id"]].peak_bytes
        assert expected is not None
        # THEN models.json's total peak is that figure
        assert trial["roles"]["total"]["peak_bytes"] == expected, trial["trial_id"]
        # AND report.md's trial row prints it
        row = next(
            line for line in report.splitlines() if line.startswith(f"| {trial['trial_id']} |")
        )
        assert f"| {format_bytes(expected)} |" in row, (trial["trial_id"], row)
        # AND a plateau never stands above it
        plateau = trial["roles"]["total"]["plateau_bytes"]
        assert plateau is None or plateau["estimate"] <= expected
