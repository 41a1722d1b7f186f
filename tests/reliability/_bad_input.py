"""Hypothesis strategies for bad raw input: a vendor's export (or the raw contract's files) with
cells replaced by hostile values, rows cut short or run long, duplicated or blank, and the file
in another encoding. Shared by tests/reliability/test_bad_input.py (few examples, in CI) and
tests/benchmarks/bad_input.py (many)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

# Values a CRM export really contains somewhere, or that break naive parsers.
NASTY = [
    "", " ", "NULL", "null", "None", "N/A", "NaN", "nan", "inf", "-inf", "1e309", "-1", "0",
    "9" * 40, "-0.0", "1,234", "1.234,56", "12 345", "１２３", "٣", "2026-13-45", "2026-02-30",
    "0000-00-00", "31/12/2026", "12/31/2026", "2026-11-01T25:61:00Z", "1788373201000",
    "99999999999999999", "yes", "TRUE", "maybe", '"', '""', "a,b", "line\nbreak", "tab\there",
    "=HYPERLINK(\"x\")", "Ω≈ç√", "🙂", "\u200b", "' OR 1=1 --", "<script>", "\\", "\x00",
    "lead-123", "[1,2]", "[]", "{}",
]

cell = st.one_of(st.sampled_from(NASTY), st.text(max_size=12))


@dataclass
class Mutation:
    """What to do to one file: cells to set, rows to cut or extend, copy or blank, encoding."""

    cells: list[tuple[int, int, str]]  # (row, column, value), indices taken modulo the size
    short_rows: list[int]
    long_rows: list[int]
    duplicate_rows: list[int]
    blank_lines: int
    encoding: str


mutations = st.builds(
    Mutation,
    cells=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), cell), max_size=25),
    short_rows=st.lists(st.integers(0, 10**6), max_size=2),
    # a row longer than the header refuses the whole file (DataError): rarer, or little else
    # would be landed
    long_rows=st.one_of(st.just([]), st.just([]), st.just([]),
                        st.lists(st.integers(0, 10**6), min_size=1, max_size=1)),
    duplicate_rows=st.lists(st.integers(0, 10**6), max_size=3),
    blank_lines=st.integers(0, 2),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
)


def mutate(source: Path, target: Path, m: Mutation) -> None:
    """Write `source` (a CSV with a header) to `target` with the mutation applied."""
    text = source.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], [list(r) for r in rows[1:]]
    if body:
        for r, c, value in m.cells:
            body[r % len(body)][c % len(header)] = value
        for r in m.duplicate_rows:
            body.append(list(body[r % len(body)]))
        for r in m.short_rows:
            row = body[r % len(body)]
            del row[len(row) // 2:]
        for r in m.long_rows:
            body[r % len(body)].append("extra")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if m.blank_lines == 2 else "\n")
    writer.writerow(header)
    writer.writerows(body)
    data = out.getvalue() + "\n" * m.blank_lines
    target.write_bytes(data.encode(m.encoding, errors="replace"))
