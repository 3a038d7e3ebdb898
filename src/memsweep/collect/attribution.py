"""Which trial and role each sampled process belongs to.

A Tune trial's trainable actor and every actor it starts (env runners, learners,
aggregators) share one placement group; the GCS actor table gives
each actor's pid, node and placement group, and each trainable registers its placement
group under its trial id (:func:`memsweep.collect.sampler.register_trial`). Processes that are
not actors themselves (a vectorised env's subprocess, a compiler worker) belong to the
nearest ancestor that is. Pure functions over plain data: testable without Ray.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SYSTEM_ROLES = {
    "raylet": "ray_system",
    "gcs": "ray_system",
    "ray_system": "ray_system",
    "driver": "driver",
    "memsweep": "memsweep",
}
_SYSTEM_TITLES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """One actor as the GCS actor table reports it."""

    actor_id: str
    class_name: str
    placement_group_id: str | None
    alive: bool
    job_id: str | None = None
    owner_worker_id: str | None = None
    """The worker that created it (a trial's trainable for its env runners)."""
    worker_id: str | None = None


@dataclass(frozen=True, slots=True)
class Attribution:
    trial_id: str | None
    role: str
    actor_id: str | None
    actor_class: str | None


def role_of_class(class_name: str) -> str:
    """An actor class → the role memsweep reports for it."""
    if class_name.endswith("Trainable") or class_name == "ImplicitFunc":
        return "trainable"
    if "EnvRunner" in class_name or "RolloutWorker" in class_name:
        return "env_runner"
    if "Learner" in class_name:
        return "learner"
    if "Aggregator" in class_name:
        return "aggregator"
    if "Replay" in class_name:
        return "replay"
    if class_name == "NodeSampler":
        return "memsweep"
    return "actor"


def attribute(
    node_id: str,
    processes: Iterable[tuple[int, int, str, str | None]],
    actors: Mapping[tuple[str, int], ActorInfo],
    trial_of_group: Mapping[str, str],
    trial_of_pid: Mapping[tuple[str, int], str],
    trainable_actor_ids: frozenset[str] | set[str] = frozenset(),
) -> dict[int, Attribution]:
    """Attribute every process of one node.

    ``processes`` holds ``(pid, ppid, title, system_label)`` rows; ``actors`` maps
    ``(node_id, pid)`` to the actor living in that process; ``trial_of_group`` maps a
    placement group id to its trial; ``trial_of_pid`` maps a registered trainable's
    ``(node_id, pid)`` to its trial (for trainables without a placement group);
    ``trainable_actor_ids`` are the actors Tune started as trials' trainables, whatever
    their class (``ImplicitFunc`` for a function trainable).
    """
    rows = {pid: (ppid, title, system) for pid, ppid, title, system in processes}
    result: dict[int, Attribution] = {}

    def own(pid: int) -> Attribution | None:
        system = rows[pid][2]
        if system is not None:
            return Attribution(None, SYSTEM_ROLES.get(system, "ray_system"), None, None)
        actor = actors.get((node_id, pid))
        if actor is not None:
            trial = trial_of_pid.get((node_id, pid))
            if trial is None and actor.placement_group_id:
                trial = trial_of_group.get(actor.placement_group_id)
            role = (
                "trainable"
                if actor.actor_id in trainable_actor_ids
                else role_of_class(actor.class_name)
            )
            return Attribution(trial, role, actor.actor_id, actor.class_name)
        trial = trial_of_pid.get((node_id, pid))
        if trial is not None:
            return Attribution(trial, "trainable", None, None)
        return None

    for pid in rows:
        found = own(pid)
        if found is not None:
            result[pid] = found
            continue
        # Not an actor: walk up to the nearest ancestor that is one.
        seen = {pid}
        ancestor = rows[pid][0]
        inherited: Attribution | None = None
        while ancestor in rows and ancestor not in seen:
            seen.add(ancestor)
            parent = own(ancestor)
            if parent is not None:
                if parent.role not in {"ray_system", "driver", "memsweep"}:
                    inherited = Attribution(
                        parent.trial_id, "child", parent.actor_id, parent.actor_class
                    )
                break
            ancestor = rows[ancestor][0]
        if inherited is not None:
            result[pid] = inherited
            continue
        title = rows[pid][1]
        if title.startswith(_SYSTEM_TITLES):
            result[pid] = Attribution(None, "ray_system", None, None)
        elif title.startswith("ray::"):
            result[pid] = Attribution(None, "ray_worker", None, None)
        else:
            result[pid] = Attribution(None, "ray_system", None, None)
    return result
