"""``memsweep claims``: run the claim sweeps of ``sweeps/claims/`` and build the table
(:mod:`memsweep.claims.runner` does the work)."""

from __future__ import annotations

import argparse

from memsweep.claims.runner import CLAIMS_SWEEPS_DIR, default_out, run_claims, write_table
from memsweep.cli.command import HELP_PROG, local_path, local_results_path


class ClaimsCommand:
    help = "run the claim sweeps (sweeps/claims/) and build the claims table"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="claims_command", metavar="ACTION", required=True)
        run = sub.add_parser("run", help="run the sweeps (skip finished ones), then the table")
        run.add_argument(
            "--out",
            type=local_path,
            default=None,
            help="results folder (default results/claims-<cpus>cpu-<GiB>gb)",
        )
        run.add_argument(
            "--only", action="append", metavar="SWEEP", help="run only this sweep (repeatable)"
        )
        run.add_argument(
            "--sweeps", type=local_path, default=CLAIMS_SWEEPS_DIR, help="folder of the sweep files"
        )
        run.add_argument(
            "--rerun",
            action="store_true",
            help="run every sweep again, none kept (the --out folder must not hold them yet)",
        )
        table = sub.add_parser("table", help="build the table from results already there")
        table.add_argument("folder", type=local_results_path, nargs="?", default=None)
        for child in (run, table):
            child.set_defaults(**{HELP_PROG: child.prog})

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        if args.claims_command == "table":
            return write_table(args.folder or default_out())
        return run_claims(args.out or default_out(), args.sweeps, args.only, rerun=args.rerun)
