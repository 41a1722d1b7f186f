"""Reference pages generated from the code at docs build time (never hand-copied).

- configuration: every key of the settings model (`ml.config.Settings`): type with constraints,
  default, the value in config/training_config.yaml, and a description taken from the Field's
  `description`, else the YAML's trailing comment for the key, else the comment beside (or just
  above) the field in ml/config.py;
- CLI: every command and option of the Typer app (`ml.cli.app`), through Typer's own Click
  objects (`typer.main.get_command`) and their help records;
- API: the OpenAPI schema of the FastAPI app (`ml.serving.app.create_app`, built, never started)
  as Markdown tables, plus the JSON;
- the README's intro (the home page) and data/README.md (the raw contract), links rewritten for
  the site;
- the facts of each alert rule for its runbook (severity, channels, condition, threshold keys).

`mkdocs.yml` runs these through docs/_gen/hooks.py; each function also runs on its own
(`python docs/_gen/gen_reference.py config|cli|api`) to read the output.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import re
import sys
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # document this checkout, not another install of the package
    sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from ml.config import DEFAULT_CONFIG, ENV_OVERRIDES, Settings, load_settings  # noqa: E402

CONFIG_PY = ROOT / "ml" / "config.py"
# `{{ setting:<dotted.key> }}` in a page: replaced by the value at build time (docs/_gen/hooks.py)
SETTING_MARKER = re.compile(r"\{\{\s*setting:([\w.]+)\s*\}\}")


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _prose(text: Any) -> str:
    """A comment or docstring as Markdown text: `code spans` kept, markup characters outside
    them escaped (so `<data_dir>` or `*_env` show as written)."""
    parts = str(text).split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = re.sub(r"([\\*_\[\]])", r"\\\1", parts[i]).replace("<", "&lt;")
    return _cell("`".join(parts))


def _code(text: Any) -> str:
    return f"`{_cell(text)}`" if str(text) != "" else ""


# ------------------------------------------------------------------ settings and their comments


def yaml_comments(path: Path = DEFAULT_CONFIG) -> dict[str, str]:
    """Dotted key -> the trailing comment on its line in a block-style YAML file."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    key_line = re.compile(r"^(\s*)([A-Za-z_][\w-]*)\s*:(.*)$")
    for line in path.read_text().splitlines():
        match = key_line.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        comment = _trailing_comment(rest)
        if comment:
            comments[".".join(k for _, k in stack)] = comment
    return comments


def _trailing_comment(text: str) -> str | None:
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[i + 1 :].strip()
    return None


def python_field_comments(path: Path = CONFIG_PY) -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comment beside the field, or the comment lines just
    above it, in ml/config.py."""
    source = path.read_text()
    lines = source.splitlines()
    trailing = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            trailing[tok.start[0]] = tok.string.lstrip("#").strip()
    out = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            comment = trailing.get(stmt.end_lineno) if stmt.end_lineno else None
            if comment is None or comment.startswith("noqa"):
                above, n = [], stmt.lineno - 1
                while n >= 1 and lines[n - 1].strip().startswith("#"):
                    above.insert(0, lines[n - 1].strip().lstrip("#").strip())
                    n -= 1
                comment = " ".join(above) or None
            if comment:
                out[(node.name, stmt.target.id)] = comment
    return out


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


_BOUNDS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}


def _constraints(field: Any) -> str:
    parts = []
    for meta in field.metadata:
        for attr, sign in _BOUNDS.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    return str(value)


def _lookup(tree: Any, dotted: str) -> tuple[bool, Any]:
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def setting_rows(
    model: type[BaseModel] = Settings, prefix: str = ""
) -> list[tuple[str, type[BaseModel] | None, dict[str, str]]]:
    """The settings tree in order: (dotted key, section model or None, row) where a row has
    type, default, file value and description."""
    tree = yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}
    ycomments, pycomments = yaml_comments(), python_field_comments()
    out: list[tuple[str, type[BaseModel] | None, dict[str, str]]] = []

    def describe(cls: type[BaseModel], name: str, field: Any, dotted: str) -> str:
        if field.description:
            return field.description
        if dotted in ycomments:
            return ycomments[dotted]
        for klass in cls.__mro__:
            if (klass.__name__, name) in pycomments:
                return pycomments[(klass.__name__, name)]
        return ""

    def walk(cls: type[BaseModel], prefix: str) -> None:
        # a section's own keys first, then its subsections (so each table holds one section)
        fields = sorted(cls.model_fields.items(), key=lambda kv: _is_section(kv[1].annotation))
        for name, field in fields:
            dotted = f"{prefix}{name}"
            if name == "source_file" and not prefix:
                continue  # set by load_settings, not a setting
            if _is_section(field.annotation):
                doc = describe(cls, name, field, dotted)
                out.append((dotted, field.annotation, {"description": doc}))
                walk(field.annotation, dotted + ".")
                continue
            in_file, value = _lookup(tree, dotted)
            default = field.get_default(call_default_factory=True)
            type_text = _type_name(field.annotation)
            if _constraints(field):
                type_text += f" ({_constraints(field)})"
            out.append(
                (
                    dotted,
                    None,
                    {
                        "type": type_text,
                        "default": _show(default),
                        "file": _show(value) if in_file else "(default)",
                        "description": describe(cls, name, field, dotted),
                    },
                )
            )
            # a mapping setting: one row per entry of the file, with its comment
            if isinstance(default, dict) and in_file and isinstance(value, dict):
                for key, item in value.items():
                    sub = f"{dotted}.{key}"
                    out.append(
                        (
                            sub,
                            None,
                            {
                                "type": "entry",
                                "default": _show(default.get(key, "")),
                                "file": _show(item),
                                "description": ycomments.get(sub, ""),
                            },
                        )
                    )

    walk(model, prefix)
    return out


def config_reference() -> str:
    """The configuration reference page."""
    md = [
        "# Configuration reference",
        "",
        "Generated at build time from the settings model (`ml/config.py`) and the settings file "
        "(`config/training_config.yaml`); descriptions come from the Field descriptions, the "
        "file's comments or the comments beside the fields. An unknown key or a bad value is an "
        "error that names it; `lead-scoring config` prints the effective settings.",
        "",
        "Columns: **type** (with bounds the model enforces), **default** (when the key is "
        "absent), **file** (the value in `config/training_config.yaml`). Relative paths under "
        "`paths` are resolved against `paths.data_dir`, which is resolved against the project "
        "root.",
        "",
        "## Environment variables",
        "",
        "| variable | overrides |",
        "|---|---|",
    ]
    md += [f"| `{var}` | `{key}` |" for var, key in ENV_OVERRIDES.items()]
    md += ["| `LEAD_SCORING_CONFIG` | the settings file itself |", ""]
    secrets = Settings().alerting.secret_env_names()
    md += [
        "Secrets are never in the file: the alert channels read them from these variables "
        "(named by the `*_env` keys): " + ", ".join(f"`{s}`" for s in secrets) + ".",
        "",
    ]
    table_open = False
    for dotted, section, row in setting_rows():
        if section is not None:
            depth = min(dotted.count(".") + 2, 4)
            md += ["", f"{'#' * depth} `{dotted}`", ""]
            doc = " ".join((section.__doc__ or "").split())
            if doc and doc != " ".join((BaseModel.__doc__ or "").split()):
                md += [_prose(doc), ""]
            if row["description"]:
                md += [f"*In the file:* {_prose(row['description'])}", ""]
            table_open = False
            continue
        if not table_open:
            md += ["| key | type | default | file | description |", "|---|---|---|---|---|"]
            table_open = True
        md.append(
            f"| `{dotted}` | {_cell(row['type'])} | {_code(row['default'])} | "
            f"{_code(row['file'])} | {_prose(row['description'])} |"
        )
    return "\n".join(md) + "\n"


@functools.cache
def project_settings() -> Settings:
    """The settings of config/training_config.yaml, without the environment's overrides."""
    return load_settings(DEFAULT_CONFIG, env={})


def setting_value(dotted: str) -> Any:
    """The effective value of a dotted key with the project's settings file (no environment)."""
    node: Any = project_settings()
    for key in dotted.split("."):
        if isinstance(node, dict):
            if key not in node:
                raise KeyError(f"no setting {dotted!r} (at {key!r})")
            node = node[key]
        elif isinstance(node, BaseModel) and key in type(node).model_fields:
            node = getattr(node, key)
        else:
            raise KeyError(f"no setting {dotted!r} (at {key!r})")
    return node


# ------------------------------------------------------------------ CLI


def cli_reference() -> str:
    """The CLI reference page, from the Typer app's Click objects."""
    import typer.main

    from ml.cli import app

    root = typer.main.get_command(app)
    md = [
        "# CLI reference",
        "",
        "Generated at build time from the Typer app (`ml/cli.py`). Every command prints a short "
        "summary; `--json` prints it as JSON. Errors a user can cause (bad settings, missing "
        "data, unknown version) print one line and exit with status 2.",
        "",
    ]

    def command_md(cmd: Any, ctx: Any, path: str) -> None:
        depth = min(path.count(" ") + 2, 4)
        md.extend([f"{'#' * depth} `{path}`", ""])
        if cmd.help:
            md.extend([_prose(cmd.help), ""])
        md.extend(["```text", ctx.get_usage(), "```", ""])
        rows = [p.get_help_record(ctx) for p in cmd.params]
        rows = [r for r in rows if r]
        if rows:
            md.extend(["| option | description |", "|---|---|"])
            md.extend(f"| `{_cell(opts)}` | {_prose(text)} |" for opts, text in rows)
            md.append("")
        for name, sub in getattr(cmd, "commands", {}).items():
            command_md(sub, sub.context_class(sub, info_name=name, parent=ctx), f"{path} {name}")

    command_md(root, root.context_class(root, info_name="lead-scoring"), "lead-scoring")
    return "\n".join(md) + "\n"


# ------------------------------------------------------------------ API


def openapi_schema() -> dict[str, Any]:
    """The service's OpenAPI schema; the app is built (no store is opened) and not started."""
    import tempfile

    from ml.serving.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(DEFAULT_CONFIG, env={}, overrides={"paths.data_dir": tmp})
        return create_app(settings).openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _schema_type(s: dict[str, Any] | bool) -> str:
    if isinstance(s, bool):  # JSON Schema's `true`: anything
        return "any"
    if "$ref" in s:
        name = _ref_name(s["$ref"])
        return f"[{name}](#{name.lower()})"
    if "anyOf" in s:
        return " or ".join(_schema_type(x) for x in s["anyOf"])
    if "enum" in s:
        return " | ".join(json.dumps(v) for v in s["enum"])
    kind = s.get("type", "any")
    if kind == "array":
        return f"array of {_schema_type(s.get('items', {}))}"
    if kind == "object" and "additionalProperties" in s:
        return f"object of {_schema_type(s['additionalProperties'])}"
    return kind


_LIMITS = {
    "minLength": "length ≥ {}",
    "maxLength": "length ≤ {}",
    "minItems": "items ≥ {}",
    "maxItems": "items ≤ {}",
    "minimum": "≥ {}",
    "maximum": "≤ {}",
    "exclusiveMinimum": "> {}",
    "exclusiveMaximum": "< {}",
}


def _schema_limits(s: dict[str, Any]) -> str:
    parts = []
    for sub in [s, *s.get("anyOf", [])]:
        for key, fmt in _LIMITS.items():
            if key in sub:
                value = sub[key]
                value = int(value) if isinstance(value, float) and value.is_integer() else value
                parts.append(fmt.format(value))
    return ", ".join(parts)


def api_reference(schema: dict[str, Any]) -> str:
    """The API reference page: endpoints, then every schema as a table, then the JSON."""
    info = schema.get("info", {})
    md = [
        "# API reference",
        "",
        f"**{info.get('title', '')}** {info.get('version', '')} — {info.get('summary', '')}",
        "",
        "Generated at build time from the OpenAPI schema of the FastAPI app "
        "(`ml/serving/app.py`, `create_app`). A running service also serves it at `/openapi.json`"
        " and an interactive page at `/docs`. The schema as a file: [openapi.json](openapi.json).",
        "",
        "## Endpoints",
        "",
    ]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            md += [f"### `{method.upper()} {path}`", ""]
            if op.get("summary"):
                md += [f"**{op['summary']}**", ""]
            if op.get("description"):
                md += [_prose(op["description"]), ""]
            body = op.get("requestBody")
            if body:
                for media, content in body.get("content", {}).items():
                    md += [f"Request body ({media}): {_schema_type(content.get('schema', {}))}", ""]
            md += ["| status | meaning | body |", "|---|---|---|"]
            for status, response in op.get("responses", {}).items():
                content = response.get("content", {})
                bodies = ", ".join(
                    f"{_schema_type(c.get('schema', {}))} ({media})" for media, c in content.items()
                )
                bodies = _cell(bodies)
                md.append(f"| {status} | {_prose(response.get('description', ''))} | {bodies} |")
            md.append("")
    md += ["## Schemas", ""]
    for name, s in schema.get("components", {}).get("schemas", {}).items():
        md += [f"### {name}", ""]
        if s.get("description"):
            md += [" ".join(s["description"].split()), ""]
        required = set(s.get("required", []))
        md += [
            "| field | type | required | limits | default | description |",
            "|---|---|---|---|---|---|",
        ]
        for field, p in s.get("properties", {}).items():
            default = json.dumps(p["default"]) if "default" in p else ""
            md.append(
                f"| `{field}` | {_cell(_schema_type(p))} | {'yes' if field in required else ''} | "
                f"{_cell(_schema_limits(p))} | {_code(default)} | "
                f"{_prose(p.get('description', ''))} |"
            )
        if s.get("examples"):
            md += ["", "Example:", "", "```json", json.dumps(s["examples"][0], indent=2), "```"]
        md.append("")
    md += [
        "## The schema",
        "",
        '??? abstract "openapi.json"',
        "",
        "    ```json",
        *("    " + line for line in json.dumps(schema, indent=2).splitlines()),
        "    ```",
        "",
    ]
    return "\n".join(md) + "\n"


# ------------------------------------------------------------------ pages from the repository

# repository paths linked from the README and data/README.md -> their page in the site
SITE_PAGES = {"data/README.md": "raw-contract.md", "README.md": "index.md"}


def rewrite_links(markdown: str, source: str) -> str:
    """Point a repository file's relative links at the site's pages.

    Raises:
        ValueError: a relative link the site has no page for (add it to SITE_PAGES).
    """

    def fix(match: re.Match[str]) -> str:
        text, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:|^#", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        if path in SITE_PAGES:
            new = SITE_PAGES[path]
        elif path.startswith("docs/"):
            new = path.removeprefix("docs/")
        else:
            raise ValueError(f"{source} links to {target!r}, which has no page in the site")
        return f"[{text}]({new}{'#' + anchor if anchor else ''})"

    return re.sub(r"\[([^\]]*)\]\(([^)\s]+)\)", fix, markdown)


def readme_intro() -> str:
    """The README up to its first task section (what the platform is, the two commands, the
    flow, the folders): the home page."""
    text = (ROOT / "README.md").read_text()
    intro = text.split("\n## Tasks", 1)[0]
    return rewrite_links(intro, "README.md") + (
        "\n\nNext: [Getting started](getting-started.md) · [Architecture](architecture.md) · "
        "[Runbooks](runbooks/index.md)\n"
    )


def raw_contract() -> str:
    """data/README.md, the raw contract."""
    return rewrite_links((ROOT / "data" / "README.md").read_text(), "data/README.md")


# ------------------------------------------------------------------ dashboard


def dashboard_pages() -> str:
    """The dashboard's pages in navigation order, each with its module's one-line summary."""
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime" warnings on import
    from ml.dashboard.pages import PAGES

    rows = ["| page | address | shows |", "|---|---|---|"]
    for title, path, _icon, module in PAGES:
        summary = " ".join((module.__doc__ or "").split("\n\n")[0].split())
        summary = summary.removeprefix(f"{title}:").strip()
        rows.append(f"| **{title}** | `/{path}` | {_prose(summary)} |")
    return "\n".join(rows)


# ------------------------------------------------------------------ alert rules


def alert_rules() -> dict[str, str]:
    """Rule name -> severity, from the project's settings."""
    return dict(project_settings().alerting.rules)


@functools.cache
def rule_sources() -> dict[str, list[str]]:
    """Rule name -> where the code raises it (`file` (`function`)), found in ml/ and
    orchestration/: the rule argument of `event_alert(settings, "<rule>", ...)`, and the rules
    of a `*_RULES` mapping (values, and the default of its `.get`)."""
    found: dict[str, set[str]] = {}
    for folder in ("ml", "orchestration"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            rel = path.relative_to(ROOT).as_posix()
            for func in [tree, *ast.walk(tree)]:
                if not isinstance(func, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                where = f"`{rel}`" + (f" (`{func.name}`)" if hasattr(func, "name") else "")
                for rule in _raised_rules(func):
                    found.setdefault(rule, set()).add(where)
    return {rule: sorted(places) for rule, places in found.items()}


def _raised_rules(scope: ast.AST) -> list[str]:
    """Rules named in `scope` itself (not in functions nested inside it)."""
    rules: list[str] = []
    nodes = list(ast.iter_child_nodes(scope))
    while nodes:
        node = nodes.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        nodes.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "event_alert" and len(node.args) > 1:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    rules.append(arg.value)
            owner = getattr(getattr(node.func, "value", None), "id", "")
            if name == "get" and owner.endswith("_RULES") and len(node.args) > 1:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    rules.append(arg.value)
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Dict)
            and any(getattr(t, "id", "").endswith("_RULES") for t in node.targets)
        ):
            rules += [
                v.value
                for v in node.value.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            ]
    return rules


def rule_facts(rule: str) -> str:
    """What a runbook states from the settings: severity, channels, condition, cool-down."""
    settings = project_settings()
    alerting = settings.alerting
    if rule not in alerting.rules:
        raise KeyError(f"no alerting rule {rule!r} in config/training_config.yaml")
    severity = alerting.rules[rule]
    channels = [*alerting.routes.get(severity, []), "jsonl"]
    condition = yaml_comments().get(f"alerting.rules.{rule}", "")
    return "\n".join(
        [
            "| | |",
            "|---|---|",
            f"| rule | `alerting.rules.{rule}` |",
            f"| severity | **{severity}** |",
            f"| channels | {', '.join(f'`{c}`' for c in channels)} "
            f"(`alerting.routes.{severity}`; the JSON-lines file "
            f"`{alerting.channels.jsonl.path.relative_to(settings.paths.data_dir)}` under the "
            "data dir gets every alert) |",
            f"| condition (from the settings file) | {_prose(condition) or '—'} |",
            f"| raised in (found in the code) | "
            f"{', '.join(rule_sources().get(rule, [])) or '**no code raises this rule yet**'} |",
            f"| cool-down | the same alert key is not re-sent to a channel within "
            f"{alerting.cooldown_minutes:g} minutes (`alerting.cooldown_minutes`) |",
        ]
    )


def runbook_index(prefix: str = "") -> str:
    """A table of every rule, its severity and channels, linking each runbook (`prefix`: the
    path from the page to the runbooks folder, with a trailing slash)."""
    alerting = project_settings().alerting
    rows = ["| rule | severity | channels | condition |", "|---|---|---|---|"]
    for rule, severity in alerting.rules.items():
        channels = ", ".join([*alerting.routes.get(severity, []), "jsonl"])
        condition = yaml_comments().get(f"alerting.rules.{rule}", "")
        rows.append(
            f"| [{rule}]({prefix}{rule}.md) | {severity} | {channels} | {_prose(condition)} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "config"
    if what == "config":
        print(config_reference())
    elif what == "cli":
        print(cli_reference())
    elif what == "api":
        print(api_reference(openapi_schema()))
    else:
        raise SystemExit("usage: gen_reference.py config|cli|api")
