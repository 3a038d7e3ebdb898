"""``memsweep validate``: check a sweep file and print the trials it expands to."""

from __future__ import annotations

import argparse
import os
import sys

from memsweep.errors import SpecError
from memsweep.spec import Study, describe_fields, load_study
from memsweep.spec.plateau import GUARD_FACTOR, estimate, sweep_seconds, time_cap_s
from memsweep.spec.runtime import Machine, check_runtime, local_machine
from memsweep.units import format_bytes

EXPLAIN_FACTORS = """\
Beyond the keys above:
  factors.<attr>  — any RLlib AlgorithmConfig attribute as a factor, written next to the four
                    built-in ones, e.g. train_batch_size_per_learner: [2000, 8000, 32000],
                    num_envs_per_env_runner: [1, 8], evaluation_num_env_runners: [0, 2];
                    env_config.<key> varies one key of the env's config. Expanded by the same
                    designs; each trial's values go to trials.parquet's factors_json column.
  rllib.<attr>    — an AlgorithmConfig attribute set to one value in every trial.
  Both are checked against RLlib's real config before Ray starts; this imports RLlib
  (a few seconds) only when the file uses them, names an algorithm memsweep does not
  know, or names an env entry point.
  env.id as an entry point (package.module:EnvClass, or envs/my_env.py:MyEnv relative to
  the sweep file) and config (train.py:make_config) run the sweep author's code: memsweep
  imports it, in validate too, as a Makefile runs its recipes. YAML tags that construct
  objects stay refused."""


class ValidateCommand:
    help = "check a sweep file and print the trials it expands to"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sweep", help="a sweep file, e.g. sweeps/default.yaml")
        parser.add_argument(
            "--explain", action="store_true", help="also print every key with its meaning"
        )
        parser.add_argument(
            "--address",
            default=os.environ.get("MEMSWEEP_RAY_ADDRESS"),
            help="check CPUs and memory against this Ray cluster instead of this machine",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        study = load_study(args.sweep)
        check_runtime(study, args.sweep, machine_for(args.address), warn)
        from memsweep.run.rllib_check import check_study

        checked = check_study(study, args.sweep)
        if args.explain:
            print("\n".join(describe_fields()))
            print()
            print(EXPLAIN_FACTORS)
        require_stop(study, args.sweep)
        print(f"{args.sweep}: study '{study.name}', {study.algorithm} on {study.env.label}")
        if checked is not None:
            env = f"; env class {checked.env_class}" if checked.env_class else ""
            buffer = "a replay buffer" if checked.has_replay_buffer else "no replay buffer"
            print(
                f"  checked against RLlib's {checked.config_class} ({buffer}{env}): "
                f"{checked.seconds:.1f} s to import RLlib and the sweep's own code"
            )
        print(f"  results: {study.storage_uri}   search: {study.search.mode}", end="")
        search = study.search
        if search.mode == "budget":
            print(
                f" (budget {format_bytes(search.budget or 0)}, maximise "
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
            for name, values in study.factors.levels():
                print(f"    {name}: {[getattr(v, 'label', v) for v in values]}")
            return 0
        points = study.points()
        estimates = [estimate(study, point) for point in points]
        total_min = sweep_seconds(study, points) / 60
        print(
            f"  {len(points)} trials: to a measurable plateau (buffer full + "
            f"{study.stop.plateau_env_steps or 0:,} env steps) about {total_min:.1f} min of "
            "sweep on a nearly idle 2-core machine (memsweep.spec.plateau; other work on the "
            "machine slows it):"
        )
        extra = list(study.factors.rllib)
        header = (
            f"    {'#':>3}  {'capacity':>10}  {'model':<22} {'workers':>7}  {'framework':<10} "
            f"{'stack':<5} {'seed':>4}  {'env steps':>10} {'steps/s':>8} {'min':>5} {'cap s':>6}"
        )
        print(header + "".join(f"  {name}" for name in extra))
        for index, found in enumerate(estimates):
            point = found.point
            cap = time_cap_s(study, point)
            speed = f"{found.steps_per_s:,.0f}" + ("" if found.measured else "?")
            print(
                f"    {index:>3}  {point.replay_capacity:>10}  {study.config_label or point.model.label:<22} "
                f"{point.num_workers:>7}  {point.framework:<10} {point.api_stack(study):<5} "
                f"{point.seed:>4}  {found.env_steps:>10,} {speed:>8} "
                f"{found.seconds / 60:>5.1f} {'-' if cap is None else f'{cap:.0f}':>6}"
                + "".join(f"  {point.rllib[name]!s:>{len(name)}}" for name in extra)
            )
        if any(not found.measured for found in estimates):
            print("  ? = speed not measured for this algorithm/env/framework: borrowed, a guess")
        if study.stop.seconds is None and study.stop.plateau_env_steps is not None:
            print(
                f"  cap s: the guard on training time, {GUARD_FACTOR:g}× the estimate (a trial "
                "it stops is reported as stop_reason time_cap)"
            )
        warnings = [
            (index, found.warning) for index, found in enumerate(estimates) if found.warning
        ]
        for index, warning in warnings:
            print(f"  warning: trial {index} cannot reach its plateau: {warning}")
        if study.resources.memory_budget is not None:
            print(f"  memory_budget: {format_bytes(study.resources.memory_budget)} (Σ PSS)")
        return 0


def require_stop(study: Study, path: str) -> None:
    """Refuse a sweep file without ``stop:`` (:class:`SpecError`, exit 2), with the fix.

    The trial's stop is what decides whether the analysis gets a measurement: the buffer
    has to fill, then a plateau follows (:mod:`memsweep.spec.plateau`). A fixed count of
    iterations (the Python API's default, 10) ends a trial wherever its buffer is: an
    iteration samples what the algorithm's config says (1,024 env steps for the default
    study's DQN, so 10 iterations stop a 12,000-transition buffer before it is full), and
    an unfilled buffer leaves the factor models nothing to fit. Only the file's author
    knows how long a trial may run, so ``validate`` and ``run`` ask rather than guess."""
    if "stop" in study.model_fields_set:
        return
    raise SpecError(
        f"{path}: no `stop:`: add `stop: {{plateau_env_steps: 15000}}` (each trial runs "
        "until its replay buffer is full, then 15,000 env steps: the plateau the analysis "
        "measures; `memsweep validate` estimates the minutes). memsweep does not default "
        "to a fixed count: 10 iterations end a trial wherever its buffer is, often before "
        "it fills, which leaves nothing to fit"
    )


def warn(message: str) -> None:
    """A runtime warning: one line on stderr; the command goes on."""
    print(f"memsweep: warning: {message}", file=sys.stderr)


def machine_for(address: str | None) -> Machine:
    """What a sweep would run on: this machine, or the cluster at ``address`` (joined
    briefly to read its nodes: :mod:`memsweep.run.cluster_check`)."""
    if not address:
        return local_machine()
    from memsweep.run.cluster_check import cluster_machine

    return cluster_machine(address)
