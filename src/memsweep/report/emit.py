"""``predict --emit ray``: a prediction turned into memory requests Ray schedules on.

Reads a :class:`~memsweep.analyze.prediction.Prediction`. Each role's request is the upper
end of its predicted **peak**'s prediction interval (the plateau's when the sweep has no
peak model) times ``1 + margin``, in bytes, rounded up to a whole MiB.

What RLlib 2.60 accepts (checked against the installed Ray, /work/notes/rllib-api.md Q6):
RLlib has no memory setting. ``"memory"`` in ``custom_resources_for_main_process`` and
``custom_resources_per_learner`` works, but ``custom_resources_per_env_runner={"memory": …}``
makes ``build_algo()`` raise ``ValueError`` (env runners are created with
``resources=…``, which may not hold ``memory``). What works for every role is ``memory`` in
the bundles of a ``tune.PlacementGroupFactory``: the trial's placement group reserves it,
bundle 0 for the trainable (and the learner, which lives in it when ``num_learners=0``),
one bundle per env runner after it. So the emitted code wraps the trainable with
``tune.with_resources``. Ray's ``memory`` is admission control only: the memory monitor
still kills by actual use; and a node's total ``memory`` is measured at ``ray.init`` (it
varies with load) unless ``ray start --memory=…`` (``ray.init(_memory=…)`` for a local Ray) fixes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from memsweep.analyze.prediction import Prediction, RolePrediction
from memsweep.errors import MemsweepError
from memsweep.units import as_written, format_bytes, format_level

MIB = 2**20
DEFAULT_MARGIN = 0.2
"""Requests are 20 % above the upper prediction bound of the peak unless ``--margin``."""


@dataclass(frozen=True)
class RayRequest:
    """Memory requests for one trial of the predicted configuration, bytes."""

    trainable_bytes: int
    """Bundle 0: the trainable and every role other than env runners (learner, replay, …)."""

    env_runner_bytes: int
    """One env runner's bundle (0 without env runners)."""

    num_env_runners: int
    margin: float
    """Fraction added over the upper bound."""

    system_bytes: int
    """Ray's own processes on a node (measured median of the sweep)."""

    roles: tuple[str, ...]
    """The roles folded into bundle 0."""

    @property
    def bundles(self) -> list[dict[str, float]]:
        """The placement group's bundles: ``[{"CPU": 1, "memory": …}, …]``."""
        head = {"CPU": 1.0, "memory": float(self.trainable_bytes)}
        runner = {"CPU": 1.0, "memory": float(self.env_runner_bytes)}
        return [head] + [dict(runner) for _ in range(self.num_env_runners)]

    @property
    def trial_bytes(self) -> int:
        return self.trainable_bytes + self.num_env_runners * self.env_runner_bytes

    def nodes_needed(self, node_memory_bytes: int | None) -> int:
        """Nodes of ``node_memory_bytes`` of Ray ``memory`` each that hold one trial's
        bundles (first-fit, largest first; ``PACK`` strategy may still spread). One node
        when no size is given. Raises :class:`MemsweepError` when a bundle fits no node."""
        if node_memory_bytes is None:
            return 1
        sizes = sorted((int(b["memory"]) for b in self.bundles), reverse=True)
        if sizes[0] > node_memory_bytes:
            raise MemsweepError(
                f"--node-memory {format_bytes(node_memory_bytes)}: the trainable's bundle "
                f"needs {format_bytes(sizes[0])}: give a larger node"
            )
        free: list[int] = []
        for size in sizes:
            for i, room in enumerate(free):
                if room >= size:
                    free[i] -= size
                    break
            else:
                free.append(node_memory_bytes - size)
        return len(free)


def _bound(role: RolePrediction) -> float:
    estimate = role.peak if role.peak is not None else role.plateau
    return max(estimate.high, estimate.value, 0.0)


def _mib_up(value: float) -> int:
    return math.ceil(value / MIB) * MIB


def ray_request(prediction: Prediction, margin: float = DEFAULT_MARGIN) -> RayRequest:
    """The requests for ``prediction`` (see the module docstring). Raises
    :class:`MemsweepError` for a negative margin."""
    if not margin >= 0:
        raise MemsweepError(f"--margin must be ≥ 0 (a fraction such as 0.2), got {margin}")
    workers = round(float(prediction.point.get("num_workers", 0) or 0))
    runners = [r for r in prediction.roles if r.role == "env_runner"]
    others = [r for r in prediction.roles if r.role not in ("env_runner", "total")]
    scale = 1.0 + margin
    head = sum(_bound(r) for r in others) * scale
    runner = _bound(runners[0]) / workers * scale if runners and workers > 0 else 0.0
    return RayRequest(
        trainable_bytes=_mib_up(head),
        env_runner_bytes=_mib_up(runner) if workers > 0 else 0,
        num_env_runners=workers if workers > 0 else 0,
        margin=margin,
        system_bytes=_mib_up(prediction.system_bytes),
        roles=tuple(r.role for r in others),
    )


def _point_text(point: dict[str, float | str]) -> str:
    parts = []
    for name, value in point.items():
        # A count carried as a float (a median or estimate of parameters) can land a hair
        # off its whole number (328705.99999999994): show it as the count it is.
        parts.append(f"{name}={as_written(value, rel_tol=1e-9)}")
    return ", ".join(parts)


def emit_ray(
    prediction: Prediction,
    margin: float = DEFAULT_MARGIN,
    node_memory_bytes: int | None = None,
    sweep: str = "",
) -> str:
    """Python a user pastes: the ``tune.PlacementGroupFactory`` with ``memory`` per bundle,
    ``tune.with_resources`` on their trainable (a name ``trainable`` they define), and the
    node count and size as a comment and a ``ray.init`` line. ``sweep`` names the source."""
    request = ray_request(prediction, margin)
    nodes = request.nodes_needed(node_memory_bytes)
    level = f"{format_level(prediction.confidence)}"
    node_ray = node_memory_bytes or request.trial_bytes
    lines: Sequence[str] = [
        f"# memsweep predict --emit ray{f' ({sweep})' if sweep else ''}: {_point_text(prediction.point)}",
        f"# Each request: upper {level} prediction bound of the role's peak + {margin:.0%}, bytes.",
        "# RLlib 2.60 has no memory setting and rejects custom_resources_per_env_runner="
        '{"memory": ...}:',
        "# the placement group's bundles carry it (bundle 0: trainable + "
        f"{', '.join(r for r in request.roles if r not in ('trainable', 'total')) or 'local learner'};"
        " then one per env runner).",
        *(f"# WARNING: {w}" for w in prediction.warnings),
        "from ray import tune",
        "",
        f"TRAINABLE_MEMORY = {request.trainable_bytes:_}  # {format_bytes(request.trainable_bytes)}",
        f"ENV_RUNNER_MEMORY = {request.env_runner_bytes:_}  # "
        f"{format_bytes(request.env_runner_bytes)} per env runner",
        f"NUM_ENV_RUNNERS = {request.num_env_runners}",
        "",
        "resources = tune.PlacementGroupFactory(",
        '    [{"CPU": 1, "memory": TRAINABLE_MEMORY}]',
        '    + [{"CPU": 1, "memory": ENV_RUNNER_MEMORY}] * NUM_ENV_RUNNERS',
        ")",
        "# Your Tune trainable or RLlib algorithm class (e.g. DQN), with num_env_runners as above:",
        "trainable = tune.with_resources(trainable, resources)",
        "",
        f"# Nodes: {nodes} with ≥ {format_bytes(node_ray)} of Ray `memory` each for one trial "
        f"({format_bytes(request.trial_bytes)} requested), plus Ray's own processes "
        f"(~{format_bytes(request.system_bytes)} per node): "
        f"≥ {format_bytes(node_ray + request.system_bytes)} of RAM per node.",
        "# Ray measures a node's `memory` at start-up (it varies with load); fix it:",
        f"#   ray start --memory={node_ray}  or, for a local Ray,  ray.init(_memory={node_ray:_})",
    ]
    return "\n".join(lines)
