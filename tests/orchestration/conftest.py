"""The code location reads the dbt manifest at import: prepare it the way `make manifest` does
when it is missing, so `pytest tests/orchestration` needs no make step first (make re-parses a
stale one)."""

from orchestration.project import dbt_project, prepare_manifest

if not dbt_project.manifest_path.is_file():
    prepare_manifest()
