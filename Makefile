# The two commands of the README, `make demo` and `make test`, each build .venv
# themselves from nothing but a Python 3 interpreter and the package registry.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Installed extras are recorded in stamp files so a later target adds only what
# it is missing and `make test` after `make demo` does not reinstall.
STAMP := $(VENV)/.skmeta-installed

.PHONY: demo test lint doc bench bench-torch bench-peers clean clean-cache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP)-base: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -e .
	touch $@

$(STAMP)-tests: $(STAMP)-base
	$(BIN)/python -m pip install -e ".[tests]"
	touch $@

$(STAMP)-docs: $(STAMP)-base
	$(BIN)/python -m pip install -e ".[docs]"
	touch $@

demo: $(STAMP)-base
	$(BIN)/python -m skmeta

test: $(STAMP)-tests
	$(BIN)/python -m pytest -n 2 --durations=15

lint: $(STAMP)-tests
	$(BIN)/ruff check skmeta tests benchmarks examples doc

doc: $(STAMP)-docs
	$(MAKE) -C doc html SPHINXBUILD=$(abspath $(BIN))/sphinx-build

bench: $(STAMP)-tests
	$(BIN)/python benchmarks/bench_proximal.py
	$(BIN)/python benchmarks/bench_fewshot.py

# PyTorch is a benchmark-only dependency: the CPU build pinned in the
# "bench" extra.
$(STAMP)-bench: $(STAMP)-tests
	$(BIN)/python -m pip install -e ".[bench]"
	touch $@

bench-torch: $(STAMP)-bench
	$(BIN)/python benchmarks/bench_maml_torch.py

# statsmodels, GPBoost and LightGBM, pinned in the "peers" extra, are
# benchmark-only dependencies too. BENCH_PEERS_ARGS=--quick for a short run.
BENCH_PEERS_ARGS ?=
$(STAMP)-peers: $(STAMP)-base
	$(BIN)/python -m pip install -e ".[peers]"
	touch $@

bench-peers: $(STAMP)-peers
	$(BIN)/python benchmarks/bench_peers.py --csv benchmarks/bench_peers.csv $(BENCH_PEERS_ARGS)

# numba's disk cache of the kernels (also cleared by skmeta itself when a
# kernel source changes; see skmeta/_kernels/_cache.py)
clean-cache:
	find skmeta -name "*.nb[ic]" -delete -o -name "skmeta-kernels.stamp" -delete

clean: clean-cache
	rm -rf $(VENV) build dist *.egg-info doc/_build doc/auto_examples doc/generated
