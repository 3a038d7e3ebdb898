"""Budget search: the largest value of a factor whose trial's peak stays under a budget.

``search: {mode: budget, budget: 16GB, maximize: replay_capacity}`` runs Tune's
``OptunaSearch`` with :class:`BudgetSampler`, one trial at a time. The candidates are the
values listed in ``factors`` for the maximised factor(s) (their product for several,
ordered by score = Σ weight·value). Each proposal uses every earlier result:

1. two anchors: the smallest candidate, then the one in the middle of the range;
2. then a line, peak ≈ a + Σ bᶠ·xᶠ, fitted by least squares on the finished trials
   (each trial's evidence is its measured or projected peak, whichever is larger; the
   same linear form as the analysis's factor models), proposes the highest-scoring
   untried candidate whose upper 95% prediction bound (the point prediction while the
   fit has no residual degrees of freedom) is under the budget; if none is, the next
   step up, to show that it exceeds.

Memory is assumed to grow with every maximised factor, so a candidate at least as large
in every factor as one that exceeded is never tried. The search is done when the best
candidate confirmed under the budget has no such open candidate above it: for a single
factor, when its next larger step was tried and exceeded (measured, or projected from
its trajectory), or it is the largest.

:class:`BudgetStopper` stops a trial as soon as its measured peak exceeds the budget, or
its projected peak (:mod:`memsweep.run.projection`) does once ``KNOWN_FILL`` of its buffer is
filled, and also once its buffer is full (its peak is then known). Its reasons and each
trial's last figures travel to Optuna as user attributes of the trial, where the sampler
and the report read them. All of this runs in the driver, inside Tune's control loop.

A trial's peak here is the trainable's ``memory/peak_bytes``: the largest Σ PSS of the
trial's processes at any result (the one definition, :mod:`memsweep.store.peaks`), so an
object that the trainable and its actors share counts once, as it does against the budget.

This module knows Tune and Optuna, not the analysis: data flows spec → Tune → samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper

from memsweep import result_keys as keys
from memsweep.run.projection import fill_fraction
from memsweep.spec import Study

PEAK_KEY = keys.PEAK_BYTES
PROJECTED_KEY = keys.PROJECTED_PEAK_BYTES
REPLAY_SIZE_KEY = keys.REPLAY_SIZE
CAPACITY_KEY = keys.BUILT_REPLAY_CAPACITY
ENV_STEPS_KEY = keys.ENV_STEPS

KNOWN_FILL = 0.2
"""Share of its buffer a trial must have filled before its projection may stop it: by
then the slope rests on enough of the trajectory to be more than start-up noise."""

FULL_RESULTS = 3
"""Results in a row with a full buffer before a trial stops: its peak has then settled.
A buffer is full once the trial has sampled as many env steps as its capacity (replay
algorithms store every step; the new stack evicts whole episodes, so its buffer hovers
up to an episode under its capacity and its fill is no sign)."""

StopReason = Literal["measured", "projected", "buffer_full"]
Verdict = Literal["under", "over", "failed", "running"]


# -- proposals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What one finished trial says about its candidate."""

    verdict: Verdict
    """``under``: confirmed under the budget; ``over``: exceeded it (measured or
    projected); ``failed``: no usable figure; ``running``: not finished."""
    evidence_bytes: float | None = None
    """max(measured peak, projected peak) at its last result, bytes."""


@dataclass(frozen=True)
class Plan:
    """The next proposal, or the answer once the search is done. Indices are into the
    candidates, ordered by score."""

    next_index: int | None
    answer_index: int | None
    next_step_index: int | None
    """The candidate right above the answer in score order, if any."""
    reason: str
    """Why this proposal, or why the search is done, in a sentence."""

    @property
    def done(self) -> bool:
        return self.next_index is None


def dominates(upper: Sequence[float], lower: Sequence[float]) -> bool:
    """True when ``upper`` is at least ``lower`` in every maximised factor."""
    return all(u >= v for u, v in zip(upper, lower, strict=True))


def upper_bounds(
    xs: Sequence[Sequence[float]], ys: Sequence[float], targets: Sequence[Sequence[float]]
) -> list[float] | None:
    """OLS peak ≈ a + Σ bᶠ·xᶠ on (xs, ys), then for each target its one-sided 95% upper
    prediction bound, or its point prediction without residual degrees of freedom.
    Factors that do not vary among xs are left out; None when nothing can be fitted."""
    import numpy as np
    import statsmodels.api as sm

    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if len(y) < 2:
        return None
    varying = [j for j in range(x.shape[1]) if np.ptp(x[:, j]) > 0]
    if not varying:
        return None
    design = np.column_stack([np.ones(len(y)), x[:, varying]])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    target = np.column_stack(
        [np.ones(len(targets)), np.asarray(targets, dtype=float).reshape(len(targets), -1)]
    )[:, [0, *[j + 1 for j in varying]]]
    fit = sm.OLS(y, design).fit()
    if fit.df_resid <= 0:
        return [float(v) for v in target @ fit.params]
    # The upper end of a two-sided 90% interval is the one-sided 95% upper bound.
    frame = fit.get_prediction(target).summary_frame(alpha=0.10)
    return [float(v) for v in frame["obs_ci_upper"]]


def plan(
    candidates: Sequence[Sequence[float]],
    observations: Mapping[int, Observation],
    budget_bytes: float,
) -> Plan:
    """The next candidate to try, or the answer. ``candidates`` hold the maximised
    factors' values, ordered by score (smallest first); ``observations`` map a candidate's
    index to what its trial showed."""
    n = len(candidates)
    under = [i for i, o in observations.items() if o.verdict == "under"]
    over = [i for i, o in observations.items() if o.verdict == "over"]
    best = max(under) if under else None
    step = None if best is None or best + 1 >= n else best + 1
    if 0 in over:
        return Plan(None, None, 0, "the smallest candidate is already over the budget")
    open_ = [
        i
        for i in range(n)
        if i not in observations
        and (best is None or i > best)
        and not any(dominates(candidates[i], candidates[j]) for j in over)
    ]
    if not open_:
        if best is None:
            reason = "no candidate could be confirmed under the budget (trials failed)"
        elif step is None:
            reason = "the largest candidate fits"
        elif step in over:
            reason = "the next larger step exceeds the budget"
        else:
            reason = "every larger candidate exceeded or failed"
        return Plan(None, best, step, reason)
    if not observations:
        return Plan(0, best, step, "anchor: the smallest candidate")
    middle = n // 2
    if set(observations) == {0} and middle in open_:
        return Plan(middle, best, step, "anchor: the middle of the range")
    fitted = {
        i: o.evidence_bytes
        for i, o in observations.items()
        if o.verdict in ("under", "over") and o.evidence_bytes is not None
    }
    bounds = upper_bounds(
        [candidates[i] for i in fitted],
        [float(v) for v in fitted.values()],
        [candidates[i] for i in open_],
    )
    if bounds is not None:
        fits = [i for i, bound in zip(open_, bounds, strict=True) if bound <= budget_bytes]
        if fits:
            return Plan(max(fits), best, step, "the largest candidate the fit says fits")
    return Plan(min(open_), best, step, "the next step up, to see whether it exceeds")


def observation(trial: FrozenTrial, budget_bytes: float) -> Observation:
    """An Optuna trial of a budget search → what it says about its candidate."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return Observation("running")
    value = trial.value if trial.state == TrialState.COMPLETE else None
    if value is None and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    if value is None:
        return Observation("failed")
    if trial.user_attrs.get("stop_reason") in ("measured", "projected") or value > budget_bytes:
        return Observation("over", float(value))
    if trial.state != TrialState.COMPLETE:
        return Observation("failed", float(value))
    return Observation("under", float(value))


# -- Optuna and Tune -------------------------------------------------------------------------


class BudgetSampler(optuna.samplers.BaseSampler):
    """Proposes each candidate with :func:`plan`, from every finished trial of the study.

    All maximised factors are sampled together (Optuna's relative sampling), so a
    weighted combination gets one joint candidate.
    """

    def __init__(
        self, names: Sequence[str], candidates: Sequence[Sequence[int]], budget_bytes: int
    ):
        self.names = tuple(names)
        self.candidates = [tuple(c) for c in candidates]
        self.budget_bytes = budget_bytes
        self.space: dict[str, BaseDistribution] = {
            name: CategoricalDistribution(sorted({c[j] for c in self.candidates}))
            for j, name in enumerate(self.names)
        }

    def observations(self, study: optuna.Study) -> dict[int, Observation]:
        """Candidate index → its latest trial's observation."""
        index = {c: i for i, c in enumerate(self.candidates)}
        out: dict[int, Observation] = {}
        for trial in study.get_trials(deepcopy=False):
            if all(name in trial.params for name in self.names):
                key = tuple(trial.params[name] for name in self.names)
                if key in index:
                    out[index[key]] = observation(trial, self.budget_bytes)
        return out

    def plan(self, study: optuna.Study) -> Plan:
        """What :func:`plan` says given the study's trials so far."""
        return plan(self.candidates, self.observations(study), self.budget_bytes)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self.space)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # The trial being asked for is RUNNING with no params yet: not a candidate's.
        proposal = self.plan(study)
        index = proposal.next_index if proposal.next_index is not None else 0
        return dict(zip(self.names, self.candidates[index], strict=True))

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        # Only reached for a parameter outside the candidates; its first choice.
        if isinstance(param_distribution, CategoricalDistribution):
            return param_distribution.choices[0]
        raise ValueError(f"a budget search samples only its candidates, not {param_name!r}")


@dataclass
class StopRecord:
    """Why :class:`BudgetStopper` stopped a trial, and its figures then."""

    reason: StopReason
    peak_bytes: int
    projected_bytes: int
    fill: float
    env_steps: int | None
    iteration: int | None


@dataclass
class BudgetState:
    """Shared between the stopper, the searcher and the report, all in the driver."""

    budget_bytes: int
    stops: dict[str, StopRecord] = field(default_factory=dict)
    full_results: dict[str, int] = field(default_factory=dict)
    """Results in a row with a full buffer, per Tune trial id."""
    last_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    final: Plan | None = None
    """The plan that ended the search (set when the searcher says it is finished)."""


def _figures(result: Mapping[str, Any]) -> dict[str, Any]:
    """The few result keys the search and its report use."""
    keys = (PEAK_KEY, PROJECTED_KEY, REPLAY_SIZE_KEY, CAPACITY_KEY, ENV_STEPS_KEY)
    out = {key: result.get(key) for key in keys}
    out["training_iteration"] = result.get("training_iteration")
    out["time_total_s"] = result.get("time_total_s")
    return out


class BudgetStopper(Stopper):
    """Stops a trial once it is known to exceed the budget (measured, or projected once
    ``KNOWN_FILL`` of its buffer is filled), and once its buffer has been full for
    ``FULL_RESULTS`` results. ``projection=False`` keeps only the buffer-full rule (the
    plain grid it is compared with stops on the budget through ``memory_budget``)."""

    def __init__(self, state: BudgetState, projection: bool = True) -> None:
        self.state = state
        self.projection = projection

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        peak = int(result.get(PEAK_KEY) or 0)
        projected = int(result.get(PROJECTED_KEY) or peak)
        fill = fill_fraction(result.get(REPLAY_SIZE_KEY), result.get(CAPACITY_KEY))
        reason: StopReason | None = None
        budget = self.state.budget_bytes
        if self.projection and peak > budget:
            reason = "measured"
        elif self.projection and projected > budget and fill >= KNOWN_FILL:
            reason = "projected"
        else:
            capacity = result.get(CAPACITY_KEY)
            steps = result.get(ENV_STEPS_KEY)
            is_full = bool(capacity) and steps is not None and steps >= capacity
            full = self.state.full_results.get(trial_id, 0) + 1 if is_full else 0
            self.state.full_results[trial_id] = full
            if full >= FULL_RESULTS:
                reason = "buffer_full"
        if reason is None:
            return False
        self.state.stops[trial_id] = StopRecord(
            reason,
            peak,
            projected,
            fill,
            result.get(ENV_STEPS_KEY),
            result.get("training_iteration"),
        )
        return True

    def stop_all(self) -> bool:
        # The searcher ends the search by answering FINISHED, which creates no trial; this
        # is the safety net for anything still running once it has (none, one at a time).
        return self.state.final is not None


class BudgetSearch(OptunaSearch):
    """Tune's ``OptunaSearch`` with a :class:`BudgetSampler`; says ``FINISHED`` once the
    sampler's plan is done, and hands each trial's figures and stop reason to Optuna as
    user attributes (the sampler reads them back)."""

    def __init__(self, sampler: BudgetSampler, state: BudgetState) -> None:
        super().__init__(metric=PROJECTED_KEY, mode="min", sampler=sampler)
        self.budget_sampler = sampler
        self.state = state
        self.tune_ids: dict[int, str] = {}
        """Optuna trial number → Tune trial id."""

    def suggest(self, trial_id: str) -> dict[Any, Any] | None:
        study = self._ot_study
        if study is not None and trial_id not in self._ot_trials:
            proposal = self.budget_sampler.plan(study)
            if proposal.done:
                self.state.final = proposal
                # Tune's own searchers return this string from a method typed Optional[Dict].
                return Searcher.FINISHED
        config: dict[str, Any] | None = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            self.tune_ids[ot_trial.number] = trial_id
            ot_trial.set_user_attr("tune_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.state.last_results[trial_id] = _figures(result)
        super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if result:
            self.state.last_results[trial_id] = _figures(result)
        last = self.state.last_results.get(trial_id, {})
        stop = self.state.stops.get(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr("stop_reason", stop.reason if stop else None)
            ot_trial.set_user_attr("error", bool(error))
            for key, value in last.items():
                ot_trial.set_user_attr(key, value)
        super().on_trial_complete(trial_id, result=result, error=error)


def candidate_names(study: Study) -> list[str]:
    """The maximised factors, in the study's order."""
    return list(study.search.weights)


def make_search(study: Study) -> tuple[BudgetSearch, BudgetStopper, BudgetState]:
    """The searcher, its stopper and their shared state for a budget study."""
    budget = study.search.budget
    if budget is None:  # The spec refuses budget mode without one.
        raise ValueError("a budget search needs search.budget")
    names = candidate_names(study)
    candidates = [tuple(getattr(p, n) for n in names) for p in study.budget_candidates()]
    state = BudgetState(budget)
    sampler = BudgetSampler(names, candidates, budget)
    return BudgetSearch(sampler, state), BudgetStopper(state), state
