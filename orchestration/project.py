"""The dbt project as Dagster sees it (dagster-dbt's `DbtProject`).

Under `dg dev` (`make dagster`) `prepare_if_dev` parses the project when the code location
loads, so an edited model shows at once. Everywhere else the manifest is prepared ahead of time
by `make manifest` (`python -m orchestration.project`), which `make demo`, `make test` and
`make check-defs` run when a dbt file changed; a missing manifest is an error that names that
command.

Both parse with the vars and the environment variables a build of the default settings uses,
so that build reuses the parse (dbt's partial parsing) instead of parsing the project again.
"""

import importlib.metadata
import json
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from ml.config import PROJECT_ROOT, load_settings
from ml.warehouse import dbt_environment, dbt_vars


class VenvDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt CLI resource for the dbt-core installed beside this interpreter, minus
    two costs it pays on every `cli()` call: `dbt --version` in a subprocess (4 s of dbt's
    imports on this machine) to learn the version the installed package states, and an
    in-process adapter handle (2 s: profile, project and macros loaded again) that only
    `fetch_row_counts` / `fetch_column_metadata` use, which these assets do not call.

    Both override private members of the resource (dagster-dbt 0.29, pinned by uv.lock);
    tests/orchestration/test_project.py fails if an upgrade renames them.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Any) -> Any:  # noqa: ARG002
        return None


# the models loop over the settings' vocabulary (dbt vars): parse with the same vars a build
# passes, from the one place that makes them, in the same environment (dbt_environment)
_SETTINGS = load_settings()
PARSE_ARGS = ["parse", "--quiet", "--vars", json.dumps(dbt_vars(_SETTINGS))]

dbt_project = DbtProject(
    project_dir=PROJECT_ROOT / "dbt_project",
    profiles_dir=PROJECT_ROOT / "dbt_project",
    prepare_project_cli_args=PARSE_ARGS,
)
PREPARE_COMMAND = "make manifest"


def dbt_cli() -> VenvDbtCliResource:
    """The dbt CLI resource of this project: the venv's dbt, whatever PATH says."""
    return VenvDbtCliResource(
        project_dir=dbt_project, dbt_executable=str(Path(sys.executable).parent / "dbt")
    )


def prepare_manifest() -> None:
    """Parse the dbt project into its manifest (what `make manifest` runs)."""
    with dbt_environment(load_settings()):
        dbt_cli().cli(PARSE_ARGS, target_path=dbt_project.target_path).wait()


with dbt_environment(_SETTINGS):
    dbt_project.prepare_if_dev()


if __name__ == "__main__":
    prepare_manifest()
