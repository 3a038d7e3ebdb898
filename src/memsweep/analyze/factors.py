"""A trial's factor values as the analysis uses them: ``factors_json`` (any RLlib key) or,
for older results, the four built-in columns."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

BUILTIN_FACTORS = ("replay_capacity", "model", "num_workers", "framework")
"""The factors every memsweep sweep has; results written before ``factors_json`` existed
carry only these, in their own columns."""

FactorValue = float | str
"""A factor's value in one trial: a number (float) or a label."""


def factor_value(value: Any) -> FactorValue | None:
    """A factor value as the analysis uses it: numbers as float, labels as str, null as None."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        return None if math.isnan(number) else number
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    text = str(value)
    return None if text == "" else text


def trial_factors(
    trials: pd.DataFrame,
) -> tuple[dict[str, dict[str, FactorValue]], list[str]]:
    """Per trial: factor name → value, and one sentence per ``factors_json`` that could not
    be read. ``factors_json`` (the shared interface) wins; a trial without it (results
    written before it existed) has the four built-in columns; a trial of a foreign
    trainable may have no factor at all (an empty mapping, never an error)."""
    out: dict[str, dict[str, FactorValue]] = {}
    problems: list[str] = []
    for trial_id, row in trials.iterrows():
        values: dict[str, FactorValue] = {}
        text = row.get("factors_json")
        parsed: Any = None
        if isinstance(text, str) and text.strip():
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(
                    f"trial {trial_id}: factors_json is not valid JSON ({exc.msg}): "
                    "using its built-in factor columns"
                )
            if parsed is not None and not isinstance(parsed, dict):
                problems.append(
                    f"trial {trial_id}: factors_json is not a JSON object: "
                    "using its built-in factor columns"
                )
                parsed = None
        if isinstance(parsed, dict):
            for name, raw in parsed.items():
                value = factor_value(raw)
                if value is not None:
                    values[str(name)] = value
        else:
            for name in BUILTIN_FACTORS:
                value = factor_value(row.get(name))
                if value is not None:
                    values[name] = value
        out[str(trial_id)] = values
    return out, problems
