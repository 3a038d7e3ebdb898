"""The environment of a study: a gymnasium id, memsweep's synthetic env or the user's
own env class, and multi-agent policies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from memsweep.spec.base import ENTRY_POINT_RE, ENV_ID_RE, FILE_ENTRY_POINT_RE, Frozen


class MultiAgentSpec(Frozen):
    """Multi-agent training: the policies (RLModules) and which agent each one controls."""

    policies: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], ...]
    """Policy ids, e.g. ``[p0, p1]``: one RLModule each, all of the study's model."""

    mapping: dict[str, str] = Field(default_factory=dict)
    """Agent id → policy id, e.g. ``{agent_0: p0, agent_1: p1}``. An agent not listed
    is mapped to the first policy."""

    @model_validator(mode="after")
    def _known_policies(self) -> MultiAgentSpec:
        if not self.policies:
            raise ValueError("multi_agent.policies needs at least one policy id, e.g. [p0, p1]")
        if len(set(self.policies)) != len(self.policies):
            raise ValueError(f"multi_agent.policies lists a policy twice: {list(self.policies)}")
        for agent, policy in self.mapping.items():
            if policy not in self.policies:
                raise ValueError(
                    f"multi_agent.mapping.{agent}: {policy!r} is not one of the policies "
                    f"{list(self.policies)}"
                )
        return self

    def policy_of(self, agent_id: Any) -> str:
        """The policy that controls ``agent_id`` (the first policy when unmapped)."""
        return self.mapping.get(str(agent_id), self.policies[0])


EnvKind = Literal["gymnasium", "synthetic", "module", "file"]


class EnvSpec(Frozen):
    """The environment. CartPole by default; a synthetic env for chosen observation sizes;
    or the user's own env class by entry point."""

    id: str = "CartPole-v1"
    """A gymnasium id (``CartPole-v1``, ``ALE/Pong-v5``), ``memsweep/Synthetic-v0``, an
    entry point ``package.module:EnvClass`` (imported in every Ray worker, like an
    installed package), or a file ``envs/my_env.py:MyEnv`` relative to the sweep file
    (shipped to Ray's workers by value). An entry point is code the sweep's author asks
    memsweep to import: ``memsweep validate`` imports it to check it is an env class and
    builds it once per distinct ``env_config`` of the trials.
    RLlib builds the class as ``EnvClass(env_config)``."""

    env_config: dict[str, Any] = Field(default_factory=dict)
    """Passed to the env class (RLlib's ``env_config``); for a gymnasium id, keyword
    arguments of ``gymnasium.make``. A key can be a factor: ``factors: {env_config.size: [8, 64]}``."""

    multi_agent: MultiAgentSpec | None = None
    """For a ``MultiAgentEnv``: ``{policies: [p0, p1], mapping: {agent_0: p0, agent_1: p1}}``."""

    obs_shape: tuple[Annotated[int, Field(gt=0)], ...] | None = None
    """``memsweep/Synthetic-v0`` only: observation shape, e.g. ``[1024]`` or ``[84, 84, 4]``."""

    obs_dtype: Literal["float32", "uint8"] = "float32"
    """``memsweep/Synthetic-v0`` only: observation element type."""

    episode_len: Annotated[int, Field(gt=0)] = 200
    """``memsweep/Synthetic-v0`` only: steps per episode."""

    atari_preprocessing: bool = True
    """``ALE/*`` only: 84×84 grey frames stacked 4 deep (RLlib's standard Atari wrapping)."""

    @field_validator("id")
    @classmethod
    def _id_or_entry_point(cls, value: str) -> str:
        # gymnasium imports the module named before a ':' in an id ("pkg.mod:Env-v0"), so
        # an id with a ':' is taken as an entry point, imported by memsweep itself, never
        # handed to gymnasium.make.
        if ENV_ID_RE.match(value) or ENTRY_POINT_RE.match(value):
            return value
        if FILE_ENTRY_POINT_RE.match(value):
            return value
        raise ValueError(
            "an env is a gymnasium id like CartPole-v1 or ALE/Pong-v5, an entry point "
            "package.module:EnvClass, or a file envs/my_env.py:MyEnv"
        )

    @model_validator(mode="after")
    def _synthetic_needs_shape(self) -> EnvSpec:
        if self.is_synthetic and not self.obs_shape:
            raise ValueError("memsweep/Synthetic-v0 needs obs_shape, e.g. [1024] or [84, 84, 4]")
        if not self.is_synthetic and self.obs_shape:
            raise ValueError(
                f"obs_shape applies to memsweep/Synthetic-v0 only; {self.id} has its own"
            )
        if self.is_synthetic and self.env_config:
            raise ValueError(
                "env_config does not apply to memsweep/Synthetic-v0: use obs_shape, "
                "obs_dtype and episode_len"
            )
        if self.multi_agent is not None and self.kind not in ("module", "file"):
            raise ValueError(
                "multi_agent needs a MultiAgentEnv class by entry point "
                "(env: {id: package.module:MyEnv, multi_agent: ...})"
            )
        return self

    @property
    def kind(self) -> EnvKind:
        """``gymnasium``, ``synthetic``, ``module`` (``pkg.mod:Class``) or ``file`` (``x.py:Class``)."""
        if self.is_synthetic:
            return "synthetic"
        if ENV_ID_RE.match(self.id):
            return "gymnasium"
        return "file" if FILE_ENTRY_POINT_RE.match(self.id) else "module"

    @property
    def label(self) -> str:
        """The env as the trials table names it: the id, or ``file.py:Class`` without its folder."""
        if self.kind == "file":
            return self.id.rsplit("/", 1)[-1]
        return self.id

    @property
    def is_synthetic(self) -> bool:
        return self.id == "memsweep/Synthetic-v0"

    @property
    def is_atari(self) -> bool:
        return self.id.startswith("ALE/")
