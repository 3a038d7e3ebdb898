"""Each process goes to its trial and role: actors by placement group, children by parent."""

from __future__ import annotations

import pytest

from memsweep.collect.attribution import ActorInfo, attribute, role_of_class

NODE = "n1"
ACTORS = {
    (NODE, 100): ActorInfo("a-trainable", "MemsweepTrainable", "pg-1", True),
    (NODE, 101): ActorInfo("a-runner", "SingleAgentEnvRunner", "pg-1", True),
    (NODE, 102): ActorInfo("a-other", "SingleAgentEnvRunner", "pg-2", True),
    (NODE, 103): ActorInfo("a-free", "Hog", None, True),
}


def test_a_trials_actors_and_their_children_are_attributed_to_it() -> None:
    processes = [
        (1, 0, "raylet", "raylet"),
        (100, 1, "ray::MemsweepTrainable.train", None),
        (101, 1, "ray::SingleAgentEnvRunner", None),
        (150, 101, "python", None),  # a vectorised env's subprocess
        (151, 150, "python", None),  # and its child
        (102, 1, "ray::SingleAgentEnvRunner", None),
        (103, 1, "ray::Hog", None),
        (104, 1, "ray::IDLE", None),
        (105, 1, "ray::DashboardAgent", None),
        (200, 0, "python", "driver"),
    ]
    out = attribute(NODE, processes, ACTORS, {"pg-1": "trial-a", "pg-2": "trial-b"}, {})
    assert (out[100].trial_id, out[100].role) == ("trial-a", "trainable")
    assert (out[101].trial_id, out[101].role) == ("trial-a", "env_runner")
    assert (out[150].trial_id, out[150].role) == ("trial-a", "child")
    assert (out[151].trial_id, out[151].role) == ("trial-a", "child")
    assert (out[102].trial_id, out[102].role) == ("trial-b", "env_runner")
    assert (out[103].trial_id, out[103].role) == (None, "actor")
    assert out[104].role == "ray_worker"
    assert out[105].role == "ray_system"
    assert out[1].role == "ray_system"
    assert out[200].role == "driver"


def test_a_registered_trainable_is_attributed_before_the_actor_table_knows_it() -> None:
    out = attribute(
        NODE, [(300, 1, "ray::MemsweepTrainable.__init__", None)], {}, {}, {(NODE, 300): "trial-c"}
    )
    assert (out[300].trial_id, out[300].role) == ("trial-c", "trainable")


@pytest.mark.parametrize(
    ("class_name", "role"),
    [
        ("MemsweepTrainable", "trainable"),
        ("SingleAgentEnvRunner", "env_runner"),
        ("MultiAgentEnvRunner", "env_runner"),
        ("RolloutWorker", "env_runner"),
        ("TorchLearner", "learner"),
        ("AggregatorActor", "aggregator"),
        ("ReplayActor", "replay"),
        ("NodeSampler", "memsweep"),
        ("Whatever", "actor"),
    ],
)
def test_actor_classes_map_to_roles(class_name: str, role: str) -> None:
    assert role_of_class(class_name) == role
