# The two commands of the README:
#   make run    set up, then run the flagship hybrid workflow on local vQPUs (no cluster)
#   make test   set up (Python packages; as root also Slurm, graphviz, chromium), then pass the tests
#   make test-fast   the inner loop: unit tests and a smoke workflow, no cluster
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV)/bin)
export PATH := $(BIN):$(PATH)

.PHONY: setup run test test-fast bench system-packages clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@# Precompile: with PYTHONDONTWRITEBYTECODE set, every qrun would recompile the package.
	$(BIN)/python -m compileall -q snakemake_executor_plugin_quantum
	touch $@

run: setup
	cd workflows/hybrid && snakemake --profile ../../profiles/local
	@echo "Results in workflows/hybrid/results; report: (cd workflows/hybrid && snakemake --report report.html)"

system-packages:
	@scripts/system-packages.sh

# Two test processes: most tests wait on processes, sockets and Slurm, not on the CPU.
# The Slurm tests run one after the other on one of them (--dist loadgroup).
test: setup system-packages
	python -m pytest -n 2 --dist loadgroup

# The inner loop (under a minute): unit tests and one small hybrid workflow, no Slurm.
test-fast: setup
	python -m pytest -q tests/unit tests/integration/test_smoke.py

bench: setup
	python -m pip install --quiet -e '.[bench]'
	python benchmarks/run.py

clean:
	@# Only what the workflows generate (all of it ignored by git): nothing tracked.
	rm -rf workflows/*/payloads workflows/*/samples workflows/*/results workflows/*/.snakemake \
		workflows/*/report.html workflows/*/report.zip workflows/*/stages.dot .pytest_cache
