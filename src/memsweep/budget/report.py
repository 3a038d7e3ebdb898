"""What a budget search found, and the plain grid over the same candidates it is compared
with: ``budget.json``/``budget.md`` and ``grid.json``/``grid.md``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from optuna.trial import FrozenTrial

from memsweep.budget.search import (
    CAPACITY_KEY,
    ENV_STEPS_KEY,
    PEAK_KEY,
    PROJECTED_KEY,
    REPLAY_SIZE_KEY,
    BudgetSearch,
    Plan,
    Verdict,
    candidate_names,
    observation,
    plan,
)
from memsweep.run.projection import fill_fraction
from memsweep.spec import Study
from memsweep.units import format_bytes

# -- report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialLine:
    """One trial of the search, as the report shows it."""

    number: int
    trial_id: str | None
    point: dict[str, int]
    score: float
    verdict: Verdict
    peak_bytes: int | None
    projected_bytes: int | None
    fill: float
    env_steps: int | None
    seconds: float | None
    stop_reason: str | None
    error: bool


@dataclass(frozen=True)
class BudgetReport:
    """What a budget search found, and what it cost."""

    study: str
    budget_bytes: int
    maximize: dict[str, float]
    fixed: dict[str, Any]
    answer: TrialLine | None
    next_step: dict[str, int] | None
    next_step_trial: TrialLine | None
    conclusion: str
    confirmed: bool
    """True when the answer's next larger step was shown to exceed (or it is the largest)."""
    trials: list[TrialLine]
    minutes: float
    grid_points: int
    max_trials: int

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def text(self) -> str:
        lines = [
            f"budget search '{self.study}': budget {format_bytes(self.budget_bytes)}, maximise "
            f"{_weights(self.maximize)}, fixed {self.fixed}"
        ]
        if self.answer is not None:
            lines.append(
                f"  answer: {_point(self.answer.point)} — trial {self.answer.trial_id}, "
                f"peak {format_bytes(self.answer.peak_bytes)} (buffer {self.answer.fill:.0%} full)"
            )
        else:
            lines.append("  answer: none")
        if self.next_step_trial is not None:
            t = self.next_step_trial
            how = (
                f"stopped early ({t.stop_reason}) at {t.fill:.0%} of its buffer"
                if t.stop_reason in ("measured", "projected")
                else "ran to its end"
                if not t.error
                else "failed"
            )
            label = "next larger step" if self.answer is not None else "smallest candidate"
            lines.append(
                f"  {label}: {_point(t.point)} — trial {t.trial_id}, peak "
                f"{format_bytes(t.peak_bytes)}, projected {format_bytes(t.projected_bytes)}; {how}"
            )
        elif self.next_step is not None:
            lines.append(f"  next larger step: {_point(self.next_step)} — not tried")
        lines.append(f"  {self.conclusion}")
        lines.append(
            f"  {len(self.trials)} trials in {self.minutes:.1f} min (a plain grid over the "
            f"same range: {self.grid_points} trials; cap {self.max_trials})"
        )
        lines.append(
            f"  {'#':>2}  {'trial':<12} {'point':<28} {'peak':>9} {'projected':>9} "
            f"{'fill':>5} {'env steps':>9} {'s':>5}  verdict / stop"
        )
        for t in self.trials:
            lines.append(
                f"  {t.number:>2}  {t.trial_id or '-':<12} {_point(t.point):<28} "
                f"{format_bytes(t.peak_bytes):>9} {format_bytes(t.projected_bytes):>9} {t.fill:>5.0%} "
                f"{_int(t.env_steps):>9} {_int(t.seconds):>5}  {t.verdict}"
                f"{' / ' + t.stop_reason if t.stop_reason else ''}{' / failed' if t.error else ''}"
            )
        return "\n".join(lines)

    def markdown(self) -> str:
        body = self.text().splitlines()
        return "\n".join(
            [f"# Budget search: {self.study}", "", *body[:1], "", "```", *body[1:], "```", ""]
        )


def _int(value: float | None) -> str:
    return "-" if value is None else str(round(value))


def _point(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _weights(weights: Mapping[str, float]) -> str:
    if len(weights) == 1:
        return next(iter(weights))
    return " + ".join(f"{w:g}·{name}" for name, w in weights.items())


def _trial_line(
    number: int, trial: FrozenTrial, names: Sequence[str], study: Study, budget: float
) -> TrialLine:
    attrs = trial.user_attrs
    point = {name: int(trial.params[name]) for name in names if name in trial.params}
    score = sum(w * point.get(n, 0) for n, w in study.search.weights.items())
    return TrialLine(
        number=number,
        trial_id=attrs.get("tune_trial_id"),
        point=point,
        score=score,
        verdict=observation(trial, budget).verdict,
        peak_bytes=attrs.get(PEAK_KEY),
        projected_bytes=attrs.get(PROJECTED_KEY),
        fill=fill_fraction(attrs.get(REPLAY_SIZE_KEY), attrs.get(CAPACITY_KEY)),
        env_steps=attrs.get(ENV_STEPS_KEY),
        seconds=attrs.get("time_total_s"),
        stop_reason=attrs.get("stop_reason"),
        error=bool(attrs.get("error")),
    )


def budget_report(study: Study, search: BudgetSearch, minutes: float) -> BudgetReport:
    """The report of a finished search, from its Optuna study and shared state."""
    sampler = search.budget_sampler
    ot_study = search._ot_study
    every: list[FrozenTrial] = ot_study.get_trials(deepcopy=False) if ot_study else []
    trials = [t for t in every if t.params]
    lines = [
        _trial_line(i + 1, t, sampler.names, study, sampler.budget_bytes)
        for i, t in enumerate(trials)
    ]
    final = search.state.final or (
        plan(sampler.candidates, sampler.observations(ot_study), sampler.budget_bytes)
        if ot_study is not None
        else Plan(0, None, None, "the search did not start")
    )
    candidates = study.budget_candidates()

    def line_at(index: int | None) -> TrialLine | None:
        if index is None:
            return None
        key = dict(zip(sampler.names, sampler.candidates[index], strict=True))
        found = [t for t in lines if t.point == key]
        return found[-1] if found else None

    answer = line_at(final.answer_index)
    step = final.next_step_index
    step_point = (
        dict(zip(sampler.names, sampler.candidates[step], strict=True))
        if step is not None
        else None
    )
    confirmed = final.done and answer is not None
    if not final.done:
        conclusion = (
            f"not confirmed: max_trials ({study.search.max_trials}) reached before the search "
            f"ended; best so far {_point(answer.point) if answer else 'none'} "
            "(raise search.max_trials)"
        )
    elif answer is None:
        conclusion = f"no answer: {final.reason}"
    else:
        conclusion = f"confirmed: {final.reason}"
    if any(t.error for t in lines):
        conclusion += f"; {sum(t.error for t in lines)} trial(s) failed (see the table)"
    fixed = {
        name: getattr(getattr(candidates[0], name), "label", getattr(candidates[0], name))
        for name in ("replay_capacity", "model", "num_workers", "framework")
        if name not in sampler.names
    }
    return BudgetReport(
        study=study.name,
        budget_bytes=sampler.budget_bytes,
        maximize=study.search.weights,
        fixed=fixed,
        answer=answer,
        next_step=step_point,
        next_step_trial=line_at(step),
        conclusion=conclusion,
        confirmed=confirmed,
        trials=lines,
        minutes=minutes,
        grid_points=len(candidates),
        max_trials=study.search.max_trials,
    )


# -- the plain grid it is compared with -------------------------------------------------------


def grid_storage(storage: str) -> str:
    """Where the plain grid of a budget search keeps its results: beside the search's own,
    never over them."""
    return f"{storage.rstrip('/')}-grid"


def grid_comparison_study(study: Study) -> Study:
    """The plain grid over a budget study's candidates: every one runs (one at a time),
    the budget stopping over-budget trials through ``resources.memory_budget``."""
    factors = study.budget_factors()
    data = study.model_dump(mode="json")
    data["factors"] = factors.model_dump(mode="json")
    data["search"] = {"mode": "grid", "design": "full"}
    data["resources"] = {
        **data["resources"],
        "memory_budget": f"{study.search.budget}B",
        "budget_scope": "trial",
        "max_concurrent_trials": 1,
    }
    data["storage"] = grid_storage(study.storage_uri)
    data["name"] = f"{study.name}-grid"[:80]
    return Study.model_validate(data)


@dataclass(frozen=True)
class GridReport:
    """What the plain grid over the same range found, and what it cost."""

    study: str
    budget_bytes: int
    answer: dict[str, Any] | None
    """The largest-scoring point whose trial ended under the budget."""
    answer_trial: str | None
    answer_peak_bytes: int | None
    trials: list[dict[str, Any]]
    minutes: float

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def text(self) -> str:
        lines = [
            f"plain grid '{self.study}': budget {format_bytes(self.budget_bytes)}, "
            f"{len(self.trials)} trials in {self.minutes:.1f} min",
            (
                f"  answer by grid: {_point(self.answer)} — trial {self.answer_trial}, "
                f"peak {format_bytes(self.answer_peak_bytes)}"
                if self.answer
                else "  answer by grid: none (every trial exceeded or failed)"
            ),
        ]
        for t in self.trials:
            lines.append(
                f"  {t['trial_id']:<12} {_point(t['point']):<28} {format_bytes(t['peak_bytes']):>9} "
                f"{t['status']}"
            )
        return "\n".join(lines)


def grid_report(study: Study, rows: Sequence[Mapping[str, Any]], minutes: float) -> GridReport:
    """Summarise the grid's trials table rows (``trials.parquet``) against the budget of
    the budget ``study`` it stands in for."""
    budget = study.search.budget or 0
    names = candidate_names(study)
    trials: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: (r.get("started_at") is None, r.get("started_at"))):
        peak = row.get("peak_bytes")
        status = str(row.get("status"))
        under = status == "terminated" and peak is not None and peak <= budget
        trials.append(
            {
                "trial_id": row.get("trial_id"),
                "point": {n: row.get(n) for n in names},
                "peak_bytes": None if peak is None else int(peak),
                "status": status if under or status != "terminated" else "over_budget_peak",
                "under": under,
                "score": sum(w * float(row.get(n) or 0) for n, w in study.search.weights.items()),
            }
        )
    fitting = [t for t in trials if t["under"]]
    best = max(fitting, key=lambda t: t["score"]) if fitting else None
    return GridReport(
        study=study.name,
        budget_bytes=budget,
        answer=best["point"] if best else None,
        answer_trial=best["trial_id"] if best else None,
        answer_peak_bytes=best["peak_bytes"] if best else None,
        trials=trials,
        minutes=minutes,
    )
