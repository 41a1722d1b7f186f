"""The dbt project as Dagster sees it (dagster-dbt's `DbtProject`).

Under `dg dev` (`make dagster`) `prepare_if_dev` parses the project when the code location
loads, so an edited model shows at once. Everywhere else the manifest is prepared ahead of time
by `make manifest` (`dagster-dbt project prepare-and-package --file orchestration/project.py`),
which `make demo`, `make test` and `make check-defs` run when a dbt file changed; a missing
manifest is an error that names that command.
"""

import json

from dagster_dbt import DbtProject

from ml.config import PROJECT_ROOT, load_settings
from ml.warehouse import dbt_vars

dbt_project = DbtProject(
    project_dir=PROJECT_ROOT / "dbt_project",
    profiles_dir=PROJECT_ROOT / "dbt_project",
    # the models loop over the settings' vocabulary (dbt vars): parse with the same vars a build
    # passes, from the one place that makes them
    prepare_project_cli_args=["parse", "--quiet", "--vars", json.dumps(dbt_vars(load_settings()))],
)
dbt_project.prepare_if_dev()

PREPARE_COMMAND = "make manifest"
