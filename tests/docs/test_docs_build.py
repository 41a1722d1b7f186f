"""The docs site builds with `mkdocs build --strict` from this checkout (the whole build: the
generated references, the dbt docs over a small generated warehouse, the runbooks).

Needs the `docs` extra (`pip install -e ".[docs]"`); without MkDocs the test is skipped and says
so. `make docs` runs the same build into site/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml.config import PROJECT_ROOT, load_settings

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


def test_every_page_of_the_nav_is_built(site: Path) -> None:
    for page in [
        "index.html",
        "getting-started.html",
        "architecture.html",
        "raw-contract.html",
        "crm-mappings.html",
        "reference/configuration.html",
        "reference/cli.html",
        "reference/api.html",
        "case-study/monitoring.html",
    ]:
        assert (site / page).is_file(), page
    for rule in load_settings(env={}).alerting.rules:
        assert (site / "runbooks" / f"{rule}.html").is_file(), rule


def test_api_reference_matches_the_apps_schema(site: Path) -> None:
    schema = json.loads((site / "reference" / "openapi.json").read_text())
    page = (site / "reference" / "api.html").read_text()
    assert schema["paths"], "empty OpenAPI schema"
    for path in schema["paths"]:
        assert path in page
    for name in schema["components"]["schemas"]:
        assert f'id="{name.lower()}"' in page


def test_dbt_docs_are_published_with_a_catalog(site: Path) -> None:
    html = (site / "dbt" / "index.html").read_text()
    assert "model.lead_scoring.lead_features" in html
    assert '"type": "VARCHAR"' in html  # column types from a real warehouse's catalog


def test_settings_markers_are_replaced(site: Path) -> None:
    for page in site.rglob("*.html"):
        if page.parts[-2:] != ("dbt", "index.html"):
            text = page.read_text()
            assert "{{ setting:" not in text and "<!-- rule-facts -->" not in text, page
