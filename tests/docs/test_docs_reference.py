"""The docs site's generated parts and its runbooks, without building the site (no MkDocs
needed): one runbook per alert rule, the YAML comment parser, link rewriting, the rules the code
raises."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from ml.config import PROJECT_ROOT, Settings, load_settings

sys.path.insert(0, str(PROJECT_ROOT / "docs" / "_gen"))
import gen_reference as ref  # noqa: E402

DOCS = PROJECT_ROOT / "docs"


def test_one_runbook_per_configured_alert_rule() -> None:
    rules = set(load_settings(env={}).alerting.rules)
    runbooks = {p.stem for p in (DOCS / "runbooks").glob("*.md")} - {"index"}
    assert runbooks == rules, (
        f"alert rules without a runbook: {sorted(rules - runbooks)}; "
        f"runbooks without a rule: {sorted(runbooks - rules)}"
    )
    nav = yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {
        Path(page).stem
        for section in nav
        if "Runbooks" in section
        for item in section["Runbooks"]
        for page in ([item] if isinstance(item, str) else item.values())
    } - {"index"}
    assert listed == rules, "mkdocs.yml's Runbooks section must list one page per alert rule"


@pytest.mark.parametrize("rule", sorted(load_settings(env={}).alerting.rules))
def test_each_runbook_states_the_rule_and_the_commands(rule: str) -> None:
    text = (DOCS / "runbooks" / f"{rule}.md").read_text()
    assert "<!-- rule-facts -->" in text  # severity, channels, condition: from the settings
    for section in ("## What fired", "## Confirm on the dashboard", "## Decide", "## Commands"):
        assert section in text, f"runbooks/{rule}.md has no '{section}' section"


def test_rules_raised_in_the_code_are_configured() -> None:
    raised = ref.rule_sources()
    assert raised, "found no event_alert call at all: the scan is broken"
    unknown = set(raised) - set(load_settings(env={}).alerting.rules)
    assert not unknown, f"the code raises alert rules that alerting.rules lacks: {unknown}"


def test_rule_facts_come_from_the_settings() -> None:
    settings = load_settings(env={})
    for rule, severity in settings.alerting.rules.items():
        facts = ref.rule_facts(rule)
        assert f"**{severity}**" in facts
        for channel in settings.alerting.routes[severity]:
            assert f"`{channel}`" in facts
    with pytest.raises(KeyError, match="no_such_rule"):
        ref.rule_facts("no_such_rule")


def test_yaml_comments_follow_nesting_and_ignore_quoted_hashes(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "# header comment\n"
        "a:                # section a\n"
        "  b: 1            # leaf b\n"
        "  c:\n"
        "    d: 'x # y'    # leaf d\n"
        'e: "#notacomment"\n'
        "f: 2 # f\n"
    )
    assert ref.yaml_comments(path) == {
        "a": "section a",
        "a.b": "leaf b",
        "a.c.d": "leaf d",
        "f": "f",
    }


def test_config_reference_lists_every_setting() -> None:
    page = ref.config_reference()

    def leaves(model: type, prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            if name == "source_file" and not prefix:
                continue
            if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
                out += leaves(field.annotation, f"{prefix}{name}.")
            else:
                out.append(f"{prefix}{name}")
        return out

    missing = [key for key in leaves(Settings) if f"`{key}`" not in page]
    assert not missing, f"settings missing from the reference: {missing}"


def test_links_to_repository_files_are_rewritten_or_refused() -> None:
    text = "see [the contract](data/README.md) and ![pic](docs/dashboard.png) and [x](#top)"
    assert ref.rewrite_links(text, "t") == (
        "see [the contract](raw-contract.md) and ![pic](dashboard.png) and [x](#top)"
    )
    with pytest.raises(ValueError, match="ml/cli.py"):
        ref.rewrite_links("[cli](ml/cli.py)", "README.md")


def test_cli_reference_has_every_command_and_option() -> None:
    import typer.main

    from ml.cli import app

    page = ref.cli_reference()
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert f"`lead-scoring {name}`" in page
        for param in command.params:
            assert param.opts[0] in page, f"{name} {param.opts[0]} missing"


def test_setting_markers_name_existing_settings() -> None:
    """Pages quote thresholds as {{ setting:<key> }} (filled at build time); a renamed or
    removed setting must fail here, not only in the (optional) site build."""
    settings = load_settings(env={})
    assert ref.setting_value("monitoring.psi_threshold") == settings.monitoring.psi_threshold
    assert ref.setting_value("alerting.rules.data_drift") == settings.alerting.rules["data_drift"]
    with pytest.raises(KeyError, match="monitoring.no_such_key"):
        ref.setting_value("monitoring.no_such_key")
    used = set()
    for page in DOCS.rglob("*.md"):
        for key in ref.SETTING_MARKER.findall(page.read_text()):
            used.add(key)
            ref.setting_value(key)  # raises KeyError naming the key
    assert used, "no page uses a setting marker: the pattern is out of date"


def test_runbooks_name_existing_dashboard_pages() -> None:
    """The 'Confirm on the dashboard' steps start with a page title in bold; each must be a page
    of the dashboard (so renaming a page shows which runbooks to update)."""
    import re

    from ml.dashboard.pages import PAGES

    titles = {title for title, *_ in PAGES}
    for page in (DOCS / "runbooks").glob("*.md"):
        text = page.read_text()
        if "## Confirm on the dashboard" not in text:
            continue
        section = text.split("## Confirm on the dashboard", 1)[1].split("\n## ", 1)[0]
        named = re.findall(r"^- \*\*([^*]+?)(?: →[^*]*)?\*\*", section, flags=re.M)
        assert named, f"{page.name}: no dashboard page named"
        unknown = set(named) - titles
        assert not unknown, f"{page.name} names pages the dashboard lacks: {unknown}"


def _doc_command_lines() -> list[tuple[str, str]]:
    """(page, line) for every shell line of the hand-written pages' code blocks."""
    import re

    out = []
    for page in DOCS.rglob("*.md"):
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    out.append((str(page.relative_to(DOCS)), line))
    return out


def test_commands_in_the_docs_exist() -> None:
    """Every `lead-scoring <command> --option` in a page's bash block is a real command and
    option of the CLI, and every Dagster job a page runs (`-j <job>`) is defined."""
    import ast
    import re

    import typer.main

    from ml.cli import app

    root = typer.main.get_command(app)
    jobs_py = (PROJECT_ROOT / "orchestration" / "jobs.py").read_text()
    jobs = {
        node.args[0].value
        for node in ast.walk(ast.parse(jobs_py))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", "") == "define_asset_job"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert jobs, "no define_asset_job in orchestration/jobs.py: the scan is out of date"
    checked = 0
    for page, line in _doc_command_lines():
        for segment in re.split(r"&&|\|", line):
            words = segment.split()
            if words and words[0] == "lead-scoring":
                command, rest = root, words[1:]
                while rest and hasattr(command, "commands") and rest[0] in command.commands:
                    command, rest = command.commands[rest[0]], rest[1:]
                assert command is not root, f"{page}: no such command in {segment!r}"
                options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
                for word in rest:
                    if word.startswith("--"):
                        assert word.split("=")[0] in options, f"{page}: {word} in {segment!r}"
                checked += 1
            if "-j" in words:
                job = words[words.index("-j") + 1]
                assert job in jobs, f"{page}: no Dagster job {job!r} (jobs.py has {jobs})"
    assert checked > 10, "found almost no lead-scoring commands in the docs: the scan is broken"


def test_dagster_names_in_the_docs_exist() -> None:
    """Assets, sensors and schedules the pages name (asset `x`, `x` asset, `*_sensor`,
    `*_schedule`) are defined in orchestration/ (read from the source, not loading Dagster)."""
    import ast
    import re

    defined: set[str] = set()
    for path in (PROJECT_ROOT / "orchestration").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.decorator_list:
                defined.add(node.name)
            is_name = isinstance(node, ast.keyword) and node.arg == "name"
            if is_name and isinstance(node.value, ast.Constant):
                defined.add(str(node.value.value))
    pattern = re.compile(r"asset `(\w+)`|`(\w+)` asset|`(\w+_(?:sensor|schedule))`")
    named = set()
    for page in DOCS.rglob("*.md"):
        for groups in pattern.findall(page.read_text()):
            named.add(next(g for g in groups if g))
    assert named, "no Dagster name found in the docs: the pattern is out of date"
    assert not named - defined, (
        f"the docs name Dagster definitions that do not exist: {named - defined}"
    )


def test_case_study_figures_exist_and_name_only_existing_pictures() -> None:
    """Each page with `<!-- figures -->` has its generated figures (make docs-figures), and
    every picture they show is in docs/case-study/img/ (a stale reference fails here, not only
    in the strict build)."""
    import re

    marked = [p for p in (DOCS / "case-study").glob("*.md") if "<!-- figures -->" in p.read_text()]
    assert {p.stem for p in marked} >= {"deployment", "online-testing", "monitoring",
                                        "retraining", "model-card"}
    for page in marked:
        figures = DOCS / "_gen" / "figures" / f"{page.stem}.md"
        assert figures.is_file(), f"{figures} missing: make demo && make docs-figures"
        text = figures.read_text()
        assert text.startswith("<!-- generated by docs/_gen/demo_figures.py"), figures
        for image in re.findall(r"\]\((img/[^)]+)\)", text):
            assert (DOCS / "case-study" / image).is_file(), f"{figures} shows missing {image}"
