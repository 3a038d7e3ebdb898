"""``memsweep diagnose RESULTS TRIAL [--role ROLE] [--tracker memray|tracemalloc]``: rerun
one trial with allocation tracking in one role's processes and name the code whose
allocations grew (:mod:`memsweep.run.diagnose`).

Without ``--role``, the role is the one the analysis flags as growing for that trial
(:func:`default_role`), and the command says which and why.

Exit codes: 0 the report was written; 2 an unknown trial, a role with no process in the
trial or one diagnose cannot track, memray asked for and not installed; 3 a folder that
is not a memsweep sweep; 4 Ray could not run the trial; 5 the output folder cannot be
written.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from memsweep.cli.command import local_path
from memsweep.cli.output import writable_folder
from memsweep.errors import DataError, MemsweepError
from memsweep.store import is_remote

if TYPE_CHECKING:
    from memsweep.analyze.leaks import GrowthVerdict


def default_role(verdicts: Sequence[GrowthVerdict], trial_id: str) -> tuple[str, str]:
    """The role to track in ``trial_id`` and the sentence that says why.

    The tracked role (trainable, env_runner) whose growth verdict is "sustained growth"
    with the largest late rate per env step; else the trainable, with the reason: no role
    flagged (the total's verdict named), or only a role diagnose cannot track flagged."""
    from memsweep.run.diagnose import TRACKED_ROLES

    own = [v for v in verdicts if v.trial_id == trial_id]
    if not own:
        return "trainable", (
            f"trial {trial_id} has no growth verdict (not analysed): tracking the trainable"
        )

    def rate(v: GrowthVerdict) -> float:
        return v.rate_mb_per_1m_steps.value if v.rate_mb_per_1m_steps is not None else 0.0

    flagged = sorted((v for v in own if v.flagged and v.role != "total"), key=lambda v: -rate(v))
    tracked = [v for v in flagged if v.role in TRACKED_ROLES]
    if tracked:
        chosen = tracked[0]
        rate_text = (
            f" at {chosen.rate_mb_per_1k_steps.value:.3g} MB per 1k env steps"
            if chosen.rate_mb_per_1k_steps is not None
            else ""
        )
        others = [v.role for v in flagged if v is not chosen]
        also = f" (also flagged: {', '.join(others)})" if others else ""
        return chosen.role, (
            f"tracking the {chosen.role}: the analysis flags it with sustained growth"
            f"{rate_text}{also}"
        )
    if flagged:
        return "trainable", (
            f"the analysis flags {', '.join(v.role for v in flagged)}, which diagnose cannot "
            "track: tracking the trainable"
        )
    total = next((v for v in own if v.role == "total"), own[0])
    return "trainable", (
        f"no role of trial {trial_id} is flagged as growing (the trial's verdict: "
        f"{total.verdict}): tracking the trainable"
    )


class DiagnoseCommand:
    help = "rerun one trial tracking a role's allocations (memray or tracemalloc): which code grew"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results", help="the sweep's results folder (path or s3://…)")
        parser.add_argument("trial", help="trial id as in trials.parquet (e.g. 1ab5c_00006)")
        parser.add_argument(
            "--role",
            help="the role whose processes are tracked: trainable (the algorithm's main "
            "process, where the env runs when num_workers is 0) or env_runner (every remote "
            "env runner); default: the role the analysis flags as growing in that trial, "
            "else trainable",
        )
        parser.add_argument(
            "--tracker",
            choices=("memray", "tracemalloc"),
            help="memray (leaks view and flamegraph; the default when installed) or "
            "tracemalloc (two snapshots, the lines whose allocations grew; the default "
            "without memray)",
        )
        parser.add_argument(
            "--out",
            type=local_path,
            help="report folder (default: <results>/analysis/diagnose-<trial>-<role>; "
            "required for remote results)",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        from memsweep.run.diagnose import check_role, diagnose_trial, load_trial

        results: str = args.results
        trial: str = args.trial
        role: str | None = args.role
        tracker: str | None = args.tracker
        out: Path | None = args.out
        if out is None and is_remote(results):
            raise MemsweepError(f"{results} is remote: give a local --out folder for the report")
        _, point = load_trial(results, trial)
        if role is None:
            from memsweep.analyze.analysis import analyze_results
            from memsweep.cli.analyze import damaged_parquet_is_one_line

            try:
                with damaged_parquet_is_one_line():
                    analysis = analyze_results(results)
            except DataError as exc:
                # The rerun needs only the trial's point; a sweep the analysis cannot read
                # (no samples, a damaged part) still gets its default role.
                role, why = "trainable", f"no growth verdict ({exc}): tracking the trainable"
            else:
                role, why = default_role(analysis.verdicts, trial)
            print(f"memsweep diagnose: {why}", flush=True)
        check_role(role, point, trial)
        folder = out if out is not None else Path(results) / "analysis" / f"diagnose-{trial}-{role}"
        writable_folder(folder)
        print(diagnose_trial(results, trial, role, folder, tracker).text())
        return 0
