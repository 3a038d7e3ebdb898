"""What every part of the typed study shares: the frozen pydantic base, the checks on
names a sweep file gives (entry points, RLlib config keys) and short value display."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

ENV_ID_RE = re.compile(r"^(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]{1,100}$")
ENTRY_POINT_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
FILE_ENTRY_POINT_RE = re.compile(r"^[^:\x00]{1,1000}\.py:[A-Za-z_]\w*$")
"""``path/to/file.py:Name``: a Python file (relative to the sweep file) and a name in it."""
_CONFIG_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_]+)?$")


class Frozen(BaseModel):
    """Base of every spec model: unknown keys refused, immutable, field docstrings kept."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        strict=False,
        allow_inf_nan=False,
    )


def check_config_key(key: str, where: str) -> str:
    """``key`` if it can name an ``AlgorithmConfig`` attribute (``train_batch_size_per_learner``)
    or a key inside one of its dicts (``env_config.size``); ``ValueError`` otherwise.
    Whether RLlib has it is checked by :mod:`memsweep.run.rllib_check`."""
    if not _CONFIG_KEY_RE.match(key):
        raise ValueError(
            f"{where}: {key!r} is not an RLlib config key: use an AlgorithmConfig attribute "
            "like train_batch_size_per_learner, or one key inside a dict attribute like "
            "env_config.size"
        )
    return key


def short_value(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}…({len(text)} chars)"
