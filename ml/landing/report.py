"""The data-quality report of one landing: what came in, what went out, what each column needed.

Written as JSON (for machines and tests) and as one self-contained HTML page (for people) under
`<reports_dir>/landing/<date>/`.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ml.landing.fold import OUTCOMES
from ml.landing.merge import MergeCounts

MAX_EXAMPLES = 3


@dataclass
class ColumnReport:
    """How one contract column was filled."""

    column: str
    sources: list[str]  # the vendor columns it was read from (those the export had)
    absent: bool = False  # an optional column the export lacks altogether
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    # outcome -> up to MAX_EXAMPLES distinct [vendor value, written value]
    examples: dict[str, list[list[str]]] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)  # timestamps: rows read per format


@dataclass
class ExportRead:
    export: str
    files: list[str]
    encodings: list[str]
    rows: int
    blank_lines: int


@dataclass
class FileReport:
    """One contract file: rows in (from the export), rows out (written), and why they differ."""

    name: str
    exports: list[ExportRead]
    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows left out
    added: dict[str, int] = field(default_factory=dict)  # reason -> rows added (id splits)
    columns: dict[str, ColumnReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dropped_examples: dict[str, list[str]] = field(default_factory=dict)
    # rows stamped after the landing (written as they came; staging rejects them as future)
    future_rows: int = 0


@dataclass
class LandingReport:
    mapping: str
    vendor: str
    export_dir: str
    raw_dir: str
    landed_at: str
    files: dict[str, FileReport]
    report_dir: str = ""
    # a nightly increment: per raw file, ml/landing/merge.py MergeCounts as a dict
    merged: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """A short summary: rows in/out per file and the totals of each outcome."""
        out: dict[str, Any] = {"vendor": self.vendor, "report": self.report_dir}
        if self.merged is not None:
            out["merged"] = {
                name: MergeCounts(**m).describe() for name, m in self.merged.items()
            }
        for name, f in self.files.items():
            totals = dict.fromkeys(OUTCOMES, 0)
            for col in f.columns.values():
                for k, v in col.counts.items():
                    totals[k] += v
            changed = {k: v for k, v in totals.items() if k != "ok" and v}
            out[name] = (
                f"{f.rows_in} in, {f.rows_out} out"
                + (f"; dropped {f.dropped}" if f.dropped else "")
                + (f"; values {changed}" if changed else "")
            )
        return out


def write_json(report: LandingReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:80rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:right;vertical-align:top}th{background:#f4f4f4}td.l,th.l{text-align:left}
.bad{background:#fde2e1}.warn{background:#fff4d6}.ex{font-family:monospace;font-size:.85em;
text-align:left;color:#555}.muted{color:#888}
"""


def _cell(value: int, css: str = "") -> str:
    cls = f' class="{css}"' if value and css else ""
    return f"<td{cls}>{value:,}</td>" if value else '<td class="muted">0</td>'


def _examples(col: ColumnReport) -> str:
    parts = []
    for outcome, pairs in col.examples.items():
        if outcome == "ok" or not pairs:
            continue
        shown = ", ".join(
            f"{html.escape(repr(raw))} → {html.escape(repr(out)) if out else 'null'}"
            for raw, out in pairs
        )
        parts.append(f"<b>{outcome}</b>: {shown}")
    return "<br>".join(parts)


def render_html(report: LandingReport) -> str:
    """The report as one self-contained HTML page."""
    esc = html.escape
    body = [
        f"<h1>Landing report: {esc(report.vendor)} export</h1>",
        f"<p>Mapping <code>{esc(report.mapping)}</code>; export <code>{esc(report.export_dir)}"
        f"</code> → <code>{esc(report.raw_dir)}</code>; landed {esc(report.landed_at)}.</p>",
        "<table><tr><th class=l>file</th><th>rows in</th><th>rows out</th>"
        "<th class=l>left out</th><th class=l>exports read</th></tr>",
    ]
    for f in report.files.values():
        dropped = "; ".join(f"{k}: {v:,}" for k, v in f.dropped.items()) or "—"
        added = "; ".join(f"+{v:,} {k}" for k, v in f.added.items())
        reads = "<br>".join(
            f"{esc(r.export)}: {', '.join(esc(Path(p).name) for p in r.files)} "
            f"({r.rows:,} rows, {', '.join(sorted(set(r.encodings)))}"
            + (f", {r.blank_lines} blank lines" if r.blank_lines else "")
            + ")"
            for r in f.exports
        )
        body.append(
            f"<tr><td class=l>{esc(f.name)}.csv</td><td>{f.rows_in:,}</td><td>{f.rows_out:,}</td>"
            f"<td class=l>{esc(dropped)}{'<br>' + esc(added) if added else ''}</td>"
            f"<td class=l>{reads}</td></tr>"
        )
    body.append("</table>")
    if report.merged is not None:
        body.append(
            "<h2>Merged into the raw files (nightly increment)</h2><table><tr><th class=l>file"
            "</th><th>before</th><th>updated</th><th>added</th><th>after</th>"
            "<th class=l>how</th></tr>"
        )

        def num(n: int | None) -> str:
            return "—" if n is None else f"{n:,}"

        for name, m in report.merged.items():
            how = (
                "rewritten, upserted by id"
                if m.get("part") is None
                else "appended as a part file; dbt supersedes an older row of the same id"
            )
            body.append(
                f"<tr><td class=l>{esc(name)}.csv</td><td>{num(m['before'])}</td>"
                f"<td>{num(m['updated'])}</td><td>{num(m['added'])}</td>"
                f"<td>{num(m['after'])}</td>"
                f"<td class=l>{esc(how)}{': ' + esc(m['part']) if m.get('part') else ''}</td></tr>"
            )
        body.append("</table>")
    for f in report.files.values():
        body.append(f"<h2>{esc(f.name)}.csv</h2>")
        for note in f.notes:
            body.append(f"<p>{esc(note)}</p>")
        body.append(
            "<table><tr><th class=l>column</th><th class=l>from</th>"
            + "".join(f"<th>{o}</th>" for o in OUTCOMES)
            + "<th class=l>examples</th></tr>"
        )
        for col in f.columns.values():
            source = esc("absent (optional)" if col.absent else ", ".join(col.sources) or "default")
            if col.formats:
                source += (
                    "<br><span class=muted>"
                    + ", ".join(f"{esc(k)}: {v:,}" for k, v in col.formats.items())
                    + "</span>"
                )
            cells = "".join(
                _cell(
                    col.counts.get(o, 0),
                    "bad" if o == "rejected" else "warn" if o in {"null", "defaulted"} else "",
                )
                for o in OUTCOMES
            )
            body.append(
                f"<tr><td class=l>{esc(col.column)}</td><td class=l>{source}</td>"
                f"{cells}<td class=ex>{_examples(col)}</td></tr>"
            )
        body.append("</table>")
        for reason, ids in f.dropped_examples.items():
            body.append(f"<p class=muted>{esc(reason)}, e.g. {esc(', '.join(ids))}</p>")
    body.append(
        "<p class=muted>ok: unchanged; folded: case/whitespace or number formatting; mapped: a "
        "synonym, option-set code or timestamp format/zone; defaulted: empty, default written; "
        "null: written empty (an empty cell, or a known value with no equivalent of ours); "
        "rejected: not understood, written as it came (dbt staging nulls a bad "
        "attribute and counts it in stg_crm__lead_attribute_issues, and quarantines a row whose "
        "key or timestamp is unusable in *_rejected).</p>"
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Landing report "
        f"{esc(report.vendor)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )


def write_html(report: LandingReport, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")
