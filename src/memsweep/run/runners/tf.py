"""Env-runner classes for TensorFlow trials: RLlib in these processes imports TensorFlow.

The mirror image of :mod:`memsweep.run.runners.torch`: a cluster or job environment may set
``RLLIB_TEST_NO_TF_IMPORT`` for every process (so that torch trials stay TF-free), and a
TensorFlow trial's env runners must then drop it before RLlib is first imported, or
RLlib's TF policies would find a stub instead of TensorFlow.
"""

from __future__ import annotations

import os

os.environ.pop("RLLIB_TEST_NO_TF_IMPORT", None)
# RLlib's TF models break under Keras 3; tf-keras must be selected before TF is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from ray.rllib.evaluation.rollout_worker import RolloutWorker


class TFRolloutWorker(RolloutWorker):
    """RLlib's old-stack ``RolloutWorker``, in a process that imports TensorFlow."""
