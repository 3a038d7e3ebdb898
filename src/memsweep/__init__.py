"""memsweep: why does my RLlib training's RAM grow, and what will a bigger run need?

The package is folders by stage of the data path; a stage imports only from stages
before it (``import-linter`` contracts in ``pyproject.toml``):

- :mod:`memsweep.spec`: sweep file → typed, validated study;
- :mod:`memsweep.store`: the results-folder contract (Parquet schemas, writer, reader);
- :mod:`memsweep.collect`: probe, per-node sampler actor, attribution, collector, the
  thin Tune callback;
- :mod:`memsweep.run`: the study on Ray, Tune and RLlib (trainable, workloads, Ray jobs);
- :mod:`memsweep.budget`: the budget search, an application on a sweep;
- :mod:`memsweep.analyze`: numbers only (phases, trends, fits, predictions);
- :mod:`memsweep.report`: what people read (report files, plots, run summary);
- :mod:`memsweep.claims`: the claims study, an application on the analysis;
- :mod:`memsweep.cli`: the only command line.
"""

__version__ = "0.1.0"
