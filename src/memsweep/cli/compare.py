"""``memsweep compare RESULTS_A RESULTS_B``: two runs side by side (before and after an
upgrade, two machines). :mod:`memsweep.analyze.compare` matches the trials and computes the
differences; :mod:`memsweep.report.compare` writes the text."""

from __future__ import annotations

import argparse

from memsweep.cli.analyze import _option_values, damaged_parquet_is_one_line, read_results


class CompareCommand:
    help = "compare two runs: per matching trial and role, plateau, peak, bytes/transition, growth"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results_a", help="run A's results folder (path or s3://…)")
        parser.add_argument("results_b", help="run B's results folder, compared with A (B − A)")
        parser.add_argument(
            "--confidence", default="0.95", help="two-sided interval level (default 0.95)"
        )
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        args.horizon = "10M"
        confidence, horizon = _option_values(args)
        results_a = read_results(args.results_a)
        results_b = read_results(args.results_b)
        from memsweep.analyze.analysis import AnalysisOptions, analyze_results
        from memsweep.analyze.compare import compare_analyses
        from memsweep.report.compare import comparison_json, comparison_text

        options = AnalysisOptions(confidence=confidence, horizon_env_steps=horizon)
        with damaged_parquet_is_one_line():
            comparison = compare_analyses(
                analyze_results(results_a, options), analyze_results(results_b, options)
            )
        print(comparison_json(comparison) if args.json else comparison_text(comparison))
        return 0
