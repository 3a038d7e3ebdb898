"""A sampler's raw rows → rows of the ``samples`` table, each with its trial and role.

:func:`attribute_samples` applies :func:`~memsweep.collect.attribution.attribute` to one
node's drained rows and holds back the rows that cannot be attributed *yet*: an actor
the GCS does not list yet, or one whose placement group no trial has claimed yet (Tune
names a trainable's trial once its set-up is done).
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from memsweep.collect.attribution import ActorInfo, Attribution, attribute
from memsweep.store import SAMPLES

_SETTLED_ROLES = frozenset({"ray_system", "driver", "memsweep"})


def attribute_samples(
    node_id: str,
    raw: pa.Table,
    *,
    run_id: str,
    actors: Mapping[tuple[str, int], ActorInfo],
    trial_of_group: Mapping[str, str],
    trial_of_pid: Mapping[tuple[str, int], str],
    trainables: set[str],
    force: bool = False,
) -> tuple[pa.Table, pa.Table | None]:
    """``raw`` (rows of :data:`memsweep.collect.sampler.RAW_SAMPLES` from ``node_id``) →
    (rows of :data:`memsweep.store.SAMPLES` attributed now, raw rows to try again or
    None). ``force``: attribute every row now (an unknown process is then Ray's own)."""
    pids = raw["pid"].to_pylist()
    ppids = raw["ppid"].to_pylist()
    names = raw["name"].to_pylist()
    systems = raw["system"].to_pylist()
    processes = {
        pid: (pid, ppid or 0, name or "", system)
        for pid, ppid, name, system in zip(pids, ppids, names, systems, strict=True)
    }
    found: dict[int, Attribution] = attribute(
        node_id, processes.values(), actors, trial_of_group, trial_of_pid, trainables
    )
    waiting = set()
    if not force:
        for pid, who in found.items():
            if who.trial_id is not None or who.role in _SETTLED_ROLES:
                continue
            actor = actors.get((node_id, pid))
            title = processes[pid][2]
            unknown_actor = (
                actor is None and title.startswith("ray::") and not title.startswith("ray::IDLE")
            )
            unmapped_group = actor is not None and bool(actor.placement_group_id)
            if unknown_actor or unmapped_group:
                waiting.add(pid)
    n = raw.num_rows
    columns = {
        "ts": raw["ts"],
        "run_id": pa.array([run_id] * n, pa.string()),
        "node_id": pa.array([node_id] * n, pa.string()),
        "pid": raw["pid"],
        "ppid": raw["ppid"],
        "create_time": raw["create_time"],
        "name": raw["name"],
        "trial_id": pa.array([found[p].trial_id for p in pids], pa.string()),
        "role": pa.array([found[p].role for p in pids], pa.string()),
        "actor_id": pa.array([found[p].actor_id for p in pids], pa.string()),
        "actor_class": pa.array([found[p].actor_class for p in pids], pa.string()),
    }
    for name in SAMPLES.names:
        if name not in columns:
            columns[name] = raw[name]
    table = pa.Table.from_pydict(columns, schema=SAMPLES)
    if not waiting:
        return table, None
    mask = pc.is_in(raw["pid"], value_set=pa.array(sorted(waiting), pa.int32()))
    return table.filter(pc.invert(mask)), raw.filter(mask)
