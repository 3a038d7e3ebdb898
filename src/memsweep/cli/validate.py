"""``memsweep validate``: check a sweep file and print the trials it expands to."""

from __future__ import annotations

import argparse

from memsweep.spec import describe_fields, load_study


class ValidateCommand:
    help = "check a sweep file and print the trials it expands to"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sweep", help="a sweep file, e.g. sweeps/default.yaml")
        parser.add_argument(
            "--explain", action="store_true", help="also print every key with its meaning"
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        study = load_study(args.sweep)
        if args.explain:
            print("\n".join(describe_fields()))
            print()
        print(f"{args.sweep}: study '{study.name}', {study.algorithm} on {study.env.id}")
        print(f"  results: {study.storage_uri}   search: {study.search.mode}", end="")
        search = study.search
        if search.mode == "budget":
            print(
                f" (budget {(search.budget or 0) / 1e9:.2f} GB, maximise "
                f"{', '.join(search.weights)}, "
                f"at most {search.max_trials} trials, one at a time)"
            )
        else:
            print(
                f" ({search.design})"
                if search.mode == "grid"
                else f" ({search.num_samples} samples)"
            )
        stop = {k: v for k, v in study.stop.model_dump().items() if v is not None}
        print(f"  stop: {stop}   sampling: every {study.sampling.interval_s:g} s")
        if search.mode == "budget":
            print(
                "  the search picks among these candidates (the plain grid, --as-grid, runs all):"
            )
        elif study.search.mode != "grid":
            print("  trials are drawn by the searcher from these values:")
            for name, values in study.factors:
                print(f"    {name}: {[getattr(v, 'label', v) for v in values]}")
            return 0
        points = study.points()
        print(f"  {len(points)} trials:")
        header = f"    {'#':>3}  {'capacity':>10}  {'model':<22} {'workers':>7}  {'framework':<10} {'stack':<5} {'seed':>4}"
        print(header)
        for index, point in enumerate(points):
            print(
                f"    {index:>3}  {point.replay_capacity:>10}  {point.model.label:<22} "
                f"{point.num_workers:>7}  {point.framework:<10} {point.api_stack(study):<5} {point.seed:>4}"
            )
        return 0
