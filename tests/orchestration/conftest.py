"""The code location reads the dbt manifest at import: prepare it the way `make manifest` does
when it is missing, so `pytest tests/orchestration` needs no make step first (make re-parses a
stale one)."""

import os
import sys
from pathlib import Path

# dagster-dbt's preparer runs `dbt` from PATH: the venv's, as the Makefile arranges.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

from orchestration.project import dbt_project  # noqa: E402

if not dbt_project.manifest_path.is_file():
    dbt_project.preparer.prepare(dbt_project)
