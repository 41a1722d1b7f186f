# Lead-scoring platform. `make demo` runs the main job, `make test` the test suite;
# both set up the virtual environment first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv (from PyPI, pinned) lives in a small venv of its own inside .venv, so `uv sync` (which makes
# .venv exactly the lock) never removes it. uv reads neither pip.conf nor PIP_* variables: it
# installs from the index URLs recorded in uv.lock (PyPI). `uv sync` also removes pip from .venv
# (not in the lock): add a dependency to pyproject.toml and run `make lock` instead.
UV_VERSION := 0.13.9
UV := $(VENV)/.uv/bin/uv
# Extras of a working copy: the pipeline (dbt, Dagster, Evidently, Streamlit), the server-store
# drivers (PostgreSQL, Redis) and the dev tools. The service alone needs none (see Dockerfile).
# The spark and docs extras are added by the targets that need them (test-spark, demo-spark, docs).
EXTRAS ?= pipeline backends dev
UV_SYNC = UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(UV) sync --locked \
	--python $(BIN)/python $(addprefix --extra ,$(EXTRAS))
# dagster-dbt and the ml runner call the venv's `dbt`; put the venv first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DAGSTER_HOME ?= $(CURDIR)/data/dagster

.PHONY: setup lock services manifest java demo demo-prod demo-spark test test-spark test-backends \
	lint serve dashboard screenshots dagster dagster-screenshot check-defs mlflow-ui docs \
	docs-figures docs-scenarios clean

# The dbt manifest the Dagster code location reads (orchestration/project.py: dagster-dbt's
# DbtProject). Parsed again whenever a dbt file is newer; `dg dev` also parses it itself.
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := dbt_project/dbt_project.yml $(shell find dbt_project/models dbt_project/macros \
	dbt_project/tests -type f 2>/dev/null)

setup: $(VENV)/.installed

$(UV):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PYTHON) -m venv $(VENV)/.uv
	@# --isolated: from PyPI itself, whatever pip.conf or PIP_* say on this machine.
	@$(VENV)/.uv/bin/python -m pip --isolated install -q --disable-pip-version-check \
		"uv==$(UV_VERSION)"

# Installs exactly uv.lock (the project itself editable); fails if pyproject.toml changed
# without `make lock`.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	@echo "installing the locked environment into $(VENV)..."
	@$(UV_SYNC) > $(VENV)/install.log 2>&1 || (tail -40 $(VENV)/install.log; exit 1)
	@touch $@

# After editing dependencies in pyproject.toml: re-resolve uv.lock (keeps the locked versions
# that still fit; `$(UV) lock --upgrade-package NAME` moves one on purpose).
lock: | $(UV)
	$(UV) lock

manifest: $(MANIFEST)

# PYTHONPATH: this checkout's packages, whichever checkout the venv installed editable.
$(MANIFEST): $(DBT_SOURCES) | $(VENV)/.installed
	PYTHONPATH=$(CURDIR) $(BIN)/python -m orchestration.project

# PostgreSQL and Redis on 127.0.0.1 (Debian packages installed when absent; idempotent).
# Prints the URLs the backend tests read: eval "$$(make -s services)".
services:
	@bash .ci/services

# Java 17 for Spark (Debian openjdk-17-jre-headless), installed when no `java` is on PATH.
java:
	@command -v java >/dev/null || bash .ci/apt-install openjdk-17-jre-headless

# engine: spark, proven: generated data built by dbt-duckdb and dbt-spark (local Spark), then the
# marts, the quarantine, Feast's PIT training set and the batch scores compared; one verdict each.
demo-spark: setup java
	@$(BIN)/python -c "import pyspark, dbt.adapters.spark" 2>/dev/null || $(UV_SYNC) --extra spark -q
	$(BIN)/python -m ml.spark.parity $(PARITY_ARGS)

# The Spark parity tests (marker spark; slow: each builds on local Spark).
test-spark: setup java
	@$(BIN)/python -c "import pyspark, dbt.adapters.spark" 2>/dev/null || $(UV_SYNC) --extra spark -q
	$(BIN)/python -m pytest -q -m spark $(PYTEST_ARGS)

# The run is recorded in the settings' paths.dagster_home (data/dagster): `make dagster` shows it.
demo: setup manifest
	$(BIN)/python -m orchestration.demo

# The same demo on PostgreSQL (CRM tables, monitoring, prediction log, alias history, MLflow,
# Feast's registry) and Redis (Feast's online store), started by the project (.ci/services);
# prints where the scores landed and checks `lead-scoring serve` on Redis. Configuration only.
demo-prod: setup manifest
	@bash .ci/demo-prod

# The whole suite. The PostgreSQL/Redis variants of the store tests run when
# LEAD_SCORING_TEST_POSTGRES_URL / LEAD_SCORING_TEST_REDIS_URL are set (eval "$$(make -s services)")
# and are skipped otherwise (with CI=true they fail instead).
# The Spark parity tests (marker spark) take minutes: `make test-spark`.
# Two pytest-xdist workers (the machine's cores; TEST_WORKERS=0 runs in one process): tests
# sharing an expensive fixture stay on one worker (tests/conftest.py, --dist loadgroup).
TEST_WORKERS ?= 2
test: setup manifest
	$(BIN)/python -m pytest -q -m "not spark" -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Only the server-backend variants (what .ci/run shows as its own step).
test-backends: setup manifest
	$(BIN)/python -m pytest -q -m "postgres or redis" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check ml orchestration tests feature_repo

serve: setup
	$(BIN)/lead-scoring serve

dashboard: setup
	$(BIN)/lead-scoring dashboard

# Every dashboard page in headless Chromium (Debian's `chromium`; playwright from the optional
# `screenshots` extra drives it and never downloads a browser). Fails if a page shows an exception.
# SCREENSHOTS_ARGS=--fabricate shows a small built-in state instead of the demo's stores.
screenshots: setup
	@command -v chromium >/dev/null || bash .ci/apt-install chromium
	@$(BIN)/python -c "import playwright" 2>/dev/null || $(UV_SYNC) --extra screenshots -q
	$(BIN)/python tests/dashboard/screenshots.py $(SCREENSHOTS_ARGS)

dagster: setup
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg dev

# PNGs of the Dagster UI (its webserver over the demo's instance: the global asset lineage, the
# demo's run, the challenger's metadata, the scores' checks) into docs/img/, with Debian's
# chromium driven by playwright. After `make demo`.
dagster-screenshot: setup manifest
	@command -v chromium >/dev/null || bash .ci/apt-install chromium
	@$(BIN)/python -c "import playwright" 2>/dev/null || $(UV_SYNC) --extra screenshots -q
	$(BIN)/python tests/orchestration/ui_screenshots.py

# Loads the Dagster definitions the way `dg dev` does and validates them (CI runs it).
check-defs: setup manifest
	@mkdir -p $(DAGSTER_HOME)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/data/mlflow/mlflow.db --port 5000

# The documentation site into site/ with `mkdocs build --strict` (the `docs` extra). The
# references and the dbt docs are generated from the code at build time (docs/_gen/hooks.py; the
# dbt docs from a small generated warehouse in a temporary folder, never the project's own).
docs: setup
	@$(BIN)/python -c "import mkdocs, material" 2>/dev/null || $(UV_SYNC) --extra docs -q
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The case-study pages' figures (docs/_gen/figures/*.md) and screenshots (docs/case-study/img/:
# MLflow, Evidently, dashboard; the Dagster ones are `make dagster-screenshot`'s) from the stores
# of a finished `make demo`, in Debian's headless Chromium (installed when missing; never
# `playwright install`); then the CRM mappings page's: each shipped mapping's sample export
# landed, its report photographed (docs/img/landing-report-*.png).
# FIGURES_ARGS=--no-screenshots rewrites only the figures.
docs-figures: setup manifest
	@command -v chromium >/dev/null || bash .ci/apt-install chromium
	@$(BIN)/python -c "import playwright, mkdocs" 2>/dev/null || \
		$(UV_SYNC) --extra screenshots --extra docs -q
	$(BIN)/python docs/_gen/demo_figures.py $(FIGURES_ARGS)
	$(BIN)/python docs/_gen/landing_figures.py $(filter --no-screenshots,$(FIGURES_ARGS))
	$(MAKE) --no-print-directory docs-scenarios

# The case-study pages' scenarios (docs/_gen/figures/<page>-scenario.md): a drifted run and its
# alerts, the drift sensor's weekly_retrain run, a rollback with the service's hot reload, canary
# traffic (a challenger trained worse trips the guard) and an A/B test whose labels mature in a
# CRM generated 61 days past today (ab-report's verdict); performed with the CLI and Dagster on a
# scratch copy of the finished demo's data dir (DEMO_DIR; the demo's own stores are never
# written). About 15 min on a 2-core machine at load 5-8.
# SCENARIO_ARGS="--only drift" for one; without --screenshots no Chromium is needed.
DEMO_DIR ?= data
SCENARIO_ARGS ?= --screenshots
docs-scenarios: setup manifest
	@case "$(SCENARIO_ARGS)" in *--screenshots*) \
		command -v chromium >/dev/null || bash .ci/apt-install chromium; \
		$(BIN)/python -c "import playwright" 2>/dev/null || $(UV_SYNC) --extra screenshots -q;; esac
	nice -n 10 $(BIN)/python docs/_gen/scenarios.py --data-dir $(DEMO_DIR) $(SCENARIO_ARGS)

clean:
	rm -rf data/raw data/truth data/warehouse data/marts data/feast data/mlflow data/crm data/reports data/dagster \
		data/monitoring data/serving data/training
	rm -rf dbt_project/target dbt_project/logs
