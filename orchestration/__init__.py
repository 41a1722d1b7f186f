"""Dagster glue: assets, jobs, schedules and sensors that call the `ml` package."""

import warnings

# feast and dagster-dbt both install sqlglot's Rust tokenizer, which sqlglot 29 (pinned below 30
# for Feast's DuckDB store) announces as deprecated on import. It is harmless; keep the code
# location's load free of it.
warnings.filterwarnings("ignore", message=r"sqlglot\[rs\] is deprecated", category=UserWarning)
