"""A study on Ray, Tune and RLlib: :mod:`~memsweep.run.sweep` (the sweep runner),
:mod:`~memsweep.run.trainable` (the Tune trainable), :mod:`~memsweep.run.workloads`
(trial point → RLlib config), :mod:`~memsweep.run.built` (what RLlib built), :mod:`~memsweep.run.envs` (envs memsweep builds),
:mod:`~memsweep.run.runners` (env-runner classes per framework),
:mod:`~memsweep.run.workarounds` (documented RLlib and Tune workarounds),
:mod:`~memsweep.run.projection` (peak projected to a full buffer) and
:mod:`~memsweep.run.jobs` (the Ray Jobs client)."""
