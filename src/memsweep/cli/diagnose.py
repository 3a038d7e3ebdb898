"""``memsweep diagnose RESULTS TRIAL [--role ROLE]``: rerun one trial with memray in one
role's process and name the code whose allocations grew (:mod:`memsweep.run.diagnose`).

Exit codes: 0 the report was written; 2 an unknown trial, a role with no process in the
trial or one diagnose cannot track, memray not installed; 3 a folder that is not a
memsweep sweep; 4 Ray could not run the trial; 5 the output folder cannot be written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from memsweep.cli.output import writable_folder
from memsweep.errors import MemsweepError
from memsweep.store import is_remote


class DiagnoseCommand:
    help = "rerun one trial with memray in a role's process: which code's allocations grew"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results", help="the sweep's results folder (path or s3://…)")
        parser.add_argument("trial", help="trial id as in trials.parquet (e.g. 1ab5c_00006)")
        parser.add_argument(
            "--role",
            default="trainable",
            help="the role whose process is tracked (default trainable: the algorithm's "
            "main process, where the env runs when num_workers is 0)",
        )
        parser.add_argument(
            "--out",
            type=Path,
            help="report folder (default: <results>/analysis/diagnose-<trial>-<role>; "
            "required for remote results)",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        from memsweep.run.diagnose import check_role, diagnose_trial, load_trial

        results: str = args.results
        trial: str = args.trial
        role: str = args.role
        out: Path | None = args.out
        if out is None and is_remote(results):
            raise MemsweepError(f"{results} is remote: give a local --out folder for the report")
        _, point = load_trial(results, trial)
        check_role(role, point, trial)
        folder = out if out is not None else Path(results) / "analysis" / f"diagnose-{trial}-{role}"
        writable_folder(folder)
        print(diagnose_trial(results, trial, role, folder).text())
        return 0
