"""One trial's factor values (:class:`TrialPoint`), and how a Tune trial's config
becomes one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from memsweep.errors import SpecError
from memsweep.result_keys import TuneConfig
from memsweep.spec.base import Frozen
from memsweep.spec.factors import FactorValue, Framework, ModelSpec

if TYPE_CHECKING:
    from memsweep.spec.study import Study


class TrialPoint(Frozen):
    """One trial's factor values: what a Tune trial's config carries."""

    replay_capacity: int
    model: ModelSpec
    num_workers: int
    framework: Framework
    rllib: dict[str, FactorValue] = Field(default_factory=dict)
    """The RLlib-config factors' values at this point (``factors.rllib``)."""
    repeat: int = 0
    seed: int = 0

    def api_stack(self, study: Study) -> Literal["new", "old"]:
        """Which RLlib API stack this trial runs on."""
        if self.framework != "torch" or study.api_stack == "old":
            return "old"
        return "new"

    def factor_values(self, model_label: str | None = None) -> dict[str, FactorValue]:
        """Every factor's value at this point: the four built-ins (the model as its label,
        or ``model_label``: :attr:`Study.config_label`), then each RLlib-config factor by
        its config key (``env_config.size``)."""
        return {
            "replay_capacity": self.replay_capacity,
            "model": model_label or self.model.label,
            "num_workers": self.num_workers,
            "framework": self.framework,
            **self.rllib,
        }

    def factors_json(self, model_label: str | None = None) -> str:
        """:meth:`factor_values` as the trials table's ``factors_json``: a JSON object,
        numbers as JSON numbers and everything else (booleans included) as strings."""
        return json.dumps(
            {
                name: value
                if isinstance(value, int | float) and not isinstance(value, bool)
                else str(value)
                for name, value in self.factor_values(model_label).items()
            },
            sort_keys=False,
        )

    def as_row(self, model_label: str | None = None) -> dict[str, int | str]:
        """Flat, Parquet-friendly form (model as its label, or ``model_label``; every
        factor in ``factors_json``)."""
        return {
            "replay_capacity": self.replay_capacity,
            "model": model_label or self.model.label,
            "num_workers": self.num_workers,
            "framework": self.framework,
            "repeat": self.repeat,
            "seed": self.seed,
            "factors_json": self.factors_json(model_label),
        }


def point_from_config(study: Study, config: TuneConfig) -> TrialPoint:
    """A Tune trial's config → its :class:`TrialPoint`.

    Grid sweeps carry the whole point under ``"point"``; searchers (random, Optuna) draw
    flat keys, with the model given by its label (Optuna's categorical values must be
    plain strings).
    """
    if "point" in config:
        return TrialPoint.model_validate(config["point"])
    factors = study.budget_factors() if study.search.mode == "budget" else study.factors
    models = {model.label: model for model in factors.model}
    label = config["model"]
    if label not in models:
        raise SpecError(f"model {label!r} is not one of the study's: {sorted(models)}")
    repeat = int(config.get("repeat", 0))
    return TrialPoint(
        replay_capacity=int(config["replay_capacity"]),
        model=models[label],
        num_workers=int(config["num_workers"]),
        framework=config["framework"],
        rllib=dict(config.get("rllib") or {}),
        repeat=repeat,
        seed=int(config.get("seed", study.seed + repeat)),
    )
