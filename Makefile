# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest protos venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# 0.75: the smallest time scale whose figures match real timing (docs/BENCHMARKS.md,
# "Scale invariance"; etcdlab.scenario.fidelity.FAITHFUL_SCALE).
demo: $(STAMP)
	$(BIN)/etcdlab run packet-loss-30 --time-scale 0.75 --out reports/packet-loss-30

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy reads the package as installed (etcdlab.*), so it gets the folders linked
# under that name; the editable install's import hook is invisible to it.
typecheck: $(STAMP)
	rm -rf .typecheck && mkdir -p .typecheck/etcdlab
	ln -s $(CURDIR)/emulator/* $(CURDIR)/proxy $(CURDIR)/protos $(CURDIR)/bench .typecheck/etcdlab/
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Proxy overhead against a direct connection and socat (apt-get install socat).
bench: $(STAMP)
	$(BIN)/python -m etcdlab.bench.proxy_overhead --seconds 3 --rounds 3

protos: $(STAMP)
	$(BIN)/python -m etcdlab.protos.generate

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .typecheck
