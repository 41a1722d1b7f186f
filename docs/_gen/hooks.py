"""MkDocs hooks (mkdocs.yml `hooks:`): the generated pages and the settings-driven parts.

- `on_files` adds pages made from the code at build time (docs/_gen/gen_reference.py): the home
  page (README intro), the raw contract (data/README.md), the configuration, CLI and API
  references, the OpenAPI JSON and the dbt project's static docs (docs/_gen/dbt_docs.py); and
  fails the build unless every alert rule of the settings has a runbook and every runbook a rule.
- `on_page_markdown` fills the markers pages use instead of hand-copied values:
  `{{ setting:<dotted.key> }}` (the value in config/training_config.yaml), `<!-- rule-facts -->`
  (a runbook's severity, channels and condition), `<!-- runbook-index -->` and
  `<!-- dashboard-pages -->` (the dashboard's pages from ml/dashboard/pages), and
  `<!-- figures -->` (a case-study page's figures from a demo run: docs/_gen/figures/<page>.md,
  written by docs/_gen/demo_figures.py, never by hand; the build fails if one is missing) and
  `<!-- scenario -->` (what a scenario performed on a copy of the demo showed:
  docs/_gen/figures/<page>-scenario.md, written by docs/_gen/scenarios.py).
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import sys
import time
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_reference as ref  # noqa: E402
from dbt_docs import dbt_static_docs  # noqa: E402

log = logging.getLogger("mkdocs.hooks.lead_scoring")

RUNBOOKS = "runbooks"
FIGURES_MARKER = "<!-- figures -->"
SCENARIO_MARKER = "<!-- scenario -->"
FIGURES_DIR = Path(__file__).resolve().parent / "figures"


def expected_runbooks() -> set[str]:
    """The runbook pages the settings call for: runbooks/<rule>.md per alert rule."""
    return {f"{RUNBOOKS}/{rule}.md" for rule in ref.alert_rules()}


def _timed(label: str, make):  # noqa: ANN001, ANN202
    started = time.perf_counter()
    value = make()
    log.info("generated %s in %.1fs", label, time.perf_counter() - started)
    return value


def on_files(files: Files, config) -> Files:  # noqa: ANN001
    # first the cheap check, so a missing runbook fails the build at once
    present = {f.src_uri for f in files if f.src_uri.startswith(f"{RUNBOOKS}/")}
    present.discard(f"{RUNBOOKS}/index.md")
    expected = expected_runbooks()
    if expected - present:
        raise PluginError(
            "alert rules without a runbook; add "
            + ", ".join(f"docs/{p}" for p in sorted(expected - present))
        )
    stale = {p for p in present if p.endswith(".md")} - expected
    if stale:
        raise PluginError(
            "runbooks for rules not in alerting.rules (remove or rename): "
            + ", ".join(f"docs/{p}" for p in sorted(stale))
        )
    schema = _timed("the OpenAPI schema", ref.openapi_schema)
    generated = {
        "index.md": _timed("index.md", ref.readme_intro),
        "raw-contract.md": _timed("raw-contract.md", ref.raw_contract),
        "reference/configuration.md": _timed("the configuration reference", ref.config_reference),
        "reference/cli.md": _timed("the CLI reference", ref.cli_reference),
        "reference/api.md": ref.api_reference(schema),
        "reference/openapi.json": json.dumps(schema, indent=2),
    }
    generated["dbt/index.html"] = _timed("the dbt docs", dbt_static_docs)
    for uri, content in generated.items():
        if files.get_file_from_path(uri) is not None:
            raise PluginError(f"docs/{uri} is generated at build time; delete the file in docs/")
        files.append(File.generated(config, uri, content=content))
    return files


def _setting(match: re.Match[str]) -> str:
    try:
        value = ref.setting_value(match.group(1))
    except KeyError as exc:
        raise PluginError(str(exc)) from None
    return f"{value:g}" if isinstance(value, float) else str(value)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001
    markdown = ref.SETTING_MARKER.sub(_setting, markdown)
    if "<!-- rule-facts -->" in markdown:
        rule = Path(page.file.src_uri).stem
        markdown = markdown.replace("<!-- rule-facts -->", ref.rule_facts(rule))
    if "<!-- dashboard-pages -->" in markdown:
        markdown = markdown.replace("<!-- dashboard-pages -->", ref.dashboard_pages())
    if "<!-- runbook-index -->" in markdown:
        here = posixpath.dirname(page.file.src_uri) or "."
        prefix = "" if here == RUNBOOKS else posixpath.relpath(RUNBOOKS, here) + "/"
        markdown = markdown.replace("<!-- runbook-index -->", ref.runbook_index(prefix))
    if FIGURES_MARKER in markdown:
        markdown = markdown.replace(FIGURES_MARKER, _figures(Path(page.file.src_uri).stem))
    if SCENARIO_MARKER in markdown:
        stem = Path(page.file.src_uri).stem
        markdown = markdown.replace(SCENARIO_MARKER, _figures(f"{stem}-scenario", "docs-scenarios"))
    return markdown


def _figures(stem: str, target: str = "docs-figures") -> str:
    path = FIGURES_DIR / f"{stem}.md"
    if not path.is_file():
        raise PluginError(
            f"docs/_gen/figures/{stem}.md is missing: run `make {target}` after `make demo`"
        )
    return path.read_text()
