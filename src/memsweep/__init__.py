"""memsweep: why does my RLlib training's RAM grow, and what will a bigger run need?

The data path, one module per stage: :mod:`memsweep.spec` (sweep file → study) →
:mod:`memsweep.workloads` (trial → RLlib config) → :mod:`memsweep.trainable` (the Tune
trainable) → :mod:`memsweep.probe` / :mod:`memsweep.sampler` (reading memory on each
node) → :mod:`memsweep.collector` / :mod:`memsweep.callback` (attribution, draining) →
:mod:`memsweep.store` (Parquet) → :mod:`memsweep.analyze` (models, report).
"""

__version__ = "0.1.0"
