# Lead-scoring platform. `make demo` runs the main job, `make test` the test suite;
# both set up the virtual environment first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# dagster-dbt and the ml runner call the venv's `dbt`; put the venv first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DAGSTER_HOME ?= $(CURDIR)/data/dagster

.PHONY: setup demo test lint serve dashboard screenshots dagster mlflow-ui clean docs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the project into $(VENV) (about a minute the first time)..."
	@$(BIN)/pip install -q -e ".[dev]" > $(VENV)/install.log 2>&1 || (tail -40 $(VENV)/install.log; exit 1)
	@touch $@

demo: setup
	$(BIN)/python -m orchestration.demo

test: setup
	$(BIN)/python -m pytest -q

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
	@$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/pip install -q -e ".[screenshots]"
	$(BIN)/python tests/dashboard/screenshots.py $(SCREENSHOTS_ARGS)

dagster: setup
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/data/mlflow/mlflow.db --port 5000

# The documentation site into site/ with `mkdocs build --strict` (the `docs` extra). The
# references and the dbt docs are generated from the code at build time (docs/_gen/hooks.py; the
# dbt docs from a small generated warehouse in a temporary folder, never the project's own).
docs: setup
	@$(BIN)/python -c "import mkdocs, material" 2>/dev/null || $(BIN)/pip install -q -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf data/raw data/truth data/warehouse data/marts data/feast data/mlflow data/crm data/reports data/dagster \
		data/monitoring data/serving data/training
	rm -rf dbt_project/target dbt_project/logs
