# memsweep: every target sets up the project virtualenv first if it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.memsweep-installed
SWEEP ?= sweeps/default.yaml
# make test: pytest-xdist workers, each test file on one of them (a file's tests share
# their Ray); two on a 2-core machine (a Ray test waits on its trials half the time).
TEST_WORKERS ?= 2
export TF_USE_LEGACY_KERAS := 1
export RAY_DEDUP_LOGS := 0

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "memsweep needs $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install memsweep with pinned dependencies

sweep: $(STAMP) ## run the default sweep on an embedded local Ray (SWEEP=... for another)
	$(VENV)/bin/memsweep run $(SWEEP)

analyze: $(STAMP) ## analyse the default sweep's results (RESULTS=results/<name>)
	$(VENV)/bin/memsweep analyze $(or $(RESULTS),results/default)

test: $(STAMP) ## run the whole test suite (real Ray, RLlib, Tune, Parquet; 717 tests, 21-25 min on 2 cores)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not solo"
	$(PY) -m pytest -q -p no:cacheprovider -m solo

test-fast: $(STAMP) ## the quick tests: no Ray, no Python started per case (451 tests, 50 s on 2 cores)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not slow and not medium"

lint: $(STAMP) ## ruff lint + format check, strict mypy on src/, import-linter layering contracts
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

faults-doc: $(STAMP) ## run the fault tests (real Ray, root for the tmpfs/cgroup cases; ~15 min) and regenerate docs/faults.json, the tables of docs/faults.md and README.md from what they recorded
	rm -f docs/faults.json
	-MEMSWEEP_FAULTS_OUT=$(CURDIR)/docs/faults.json $(PY) -m pytest -q -p no:cacheprovider tests/collect/test_faults.py
	$(PY) -m memsweep.testing.faults_table docs/faults.json tests/collect/test_faults.py

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

claims: $(STAMP) ## the claims study: run sweeps/claims/ and write results/claims-<machine>/claims.md (~40 min)
	$(VENV)/bin/memsweep claims run $(CLAIMS_ARGS)

bench: $(STAMP) ## benchmarks: overhead (A/B interval), sampler cost vs the read floor, peak capture, attribution, analysis speed, compaction, driver RSS (results/bench-<machine>/)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

submit: $(STAMP) ## submit SWEEP to a Ray cluster at ADDRESS (http://HEAD:8265) as a Ray job
	$(VENV)/bin/memsweep submit $(SWEEP) --address $(ADDRESS) --follow

clean: ## remove generated results (keeps results/README.md) and caches
	find results -mindepth 1 -maxdepth 1 ! -name README.md ! -name 'claims-*' ! -name 'reference-*' -exec rm -rf {} +
	rm -rf .pytest_cache .mypy_cache .ruff_cache

.PHONY: help setup sweep analyze test test-fast lint faults-doc format claims bench submit clean
