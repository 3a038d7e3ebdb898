"""``memsweep export-mlflow RESULTS [--tracking-uri URI] [--experiment NAME]``: every trial
of a sweep as an MLflow run, its factors as params and its per-role memory over env steps
as metric histories (:mod:`memsweep.report.mlflow_export`).

Exit codes: 0 exported; 2 MLflow not installed (``pip install 'memsweep[mlflow]'``) or a
tracking URI MLflow refuses; 3 a folder that is not a memsweep sweep; 5 a tracking store
that cannot be opened (a SQLite file in a folder that cannot be written).
"""

from __future__ import annotations

import argparse
import logging

from memsweep.cli.analyze import damaged_parquet_is_one_line


class ExportMlflowCommand:
    help = "export a sweep's memory time series to MLflow: one run per trial (optional extra)"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results", help="the sweep's results folder (path or s3://…)")
        parser.add_argument(
            "--tracking-uri",
            help="MLflow tracking URI (default: MLflow's own: $MLFLOW_TRACKING_URI, else "
            "sqlite:///mlflow.db in the working directory)",
        )
        parser.add_argument(
            "--experiment", help="MLflow experiment name (default: the sweep's name)"
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        import os

        from memsweep.errors import MemsweepError
        from memsweep.store import refuse_missing_local

        refuse_missing_local(args.results)
        from memsweep.report.mlflow_export import MLFLOW_INSTALL, export_to_mlflow

        # MLflow retries an unreachable tracking server for minutes (7 retries with
        # back-off, 120 s per request) before it fails: a user's own settings win, else a
        # down server is one line within a minute.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise MemsweepError(f"export-mlflow needs MLflow: {MLFLOW_INSTALL}") from None
        tracking_uri: str | None = args.tracking_uri
        experiment: str | None = args.experiment
        from memsweep.analyze.analysis import analyze_results
        from memsweep.store import open_results

        # MLflow logs its database set-up at INFO on stderr; its warnings still show.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        results = open_results(args.results)
        with damaged_parquet_is_one_line():
            analysis = analyze_results(results)
        versions = results.versions()
        print(export_to_mlflow(analysis, tracking_uri, experiment, versions).text())
        return 0
