"""The dbt CLI resource's shortcuts stay valid for the installed dagster-dbt."""

import importlib.metadata

from dagster_dbt import DbtCliResource
from packaging import version

from orchestration.project import dbt_cli


def test_overridden_members_still_exist_in_dagster_dbt():
    # VenvDbtCliResource replaces these two private members; if an upgrade renames them, the
    # overrides would silently stop applying (and the build would be 6 s slower again)
    assert "_cli_version" in DbtCliResource.__dict__
    assert callable(DbtCliResource.__dict__.get("_initialize_dbt_core_adapter"))


def test_version_is_the_installed_dbt_core():
    resource = dbt_cli()
    assert resource._cli_version == version.parse(importlib.metadata.version("dbt-core"))
    assert resource._cli_version.major == 1  # dbt Core, not the Fusion engine
