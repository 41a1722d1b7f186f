"""Bad input, the long run: hypothesis-driven hostile files into landing and into dbt.

Part 1, every shipped CRM mapping: `--mapping-examples` hostile exports per vendor (a clean
sample export with cells replaced by hostile values, rows cut short or run long, duplicated,
blank lines, another encoding; tests/reliability/_bad_input.py) are landed. Never a crash: either
every row is accounted for (rows out = rows in - dropped + added = the rows written, per file) or
a DataError whose message names a file, with the raw zone left as it was.

Part 2, the raw contract through dbt: `--raw-examples` hostile raw zones (the generator's small
data, each of the four contract files mutated the same way) are built with `build_warehouse`.
Never a crash: either the build succeeds with accepted + rejected = raw rows = the data rows in
each file, or it is refused with a DataError (e.g. more than features.max_rejected_share
rejected) and the published marts stay byte-identical.

    .venv/bin/python tests/benchmarks/bad_input.py --mapping-examples 100 --raw-examples 5

Prints one table per part: examples, outcomes, failures (goal 0), with the load average.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
sys.path.insert(0, str(ROOT / "tests" / "dbt"))

from _bad_input import mutate, mutations  # noqa: E402
from _dbt_helpers import generate_small, small_settings  # noqa: E402

from ml.errors import DataError, LeadScoringError  # noqa: E402
from ml.landing import land_export, make_sample_export  # noqa: E402
from ml.landing.mapping import available_mappings  # noqa: E402

RAW_FILES = ("leads", "activities", "conversions", "lead_attribute_changes")


def _run(examples: int, body) -> None:
    """Run `body(change)` over `examples` hypothesis draws (no shrinking: outcomes are tallied,
    never raised)."""

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(change=st.lists(mutations, min_size=1, max_size=4))
    def run(change) -> None:
        body(change)

    run()


def _files_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*")) if p.is_file()}


def mappings_part(root: Path, examples: int) -> list[dict]:
    rows = []
    for vendor in sorted(available_mappings()):
        clean = make_sample_export(vendor, root / vendor / "clean", n_leads=25, days=45, seed=7,
                                   faults=False).export_dir
        clean_raw = root / vendor / "clean-raw"
        land_export(vendor, clean, clean_raw)
        tally: Counter[str] = Counter()
        failures: list[str] = []
        started = time.perf_counter()

        def body(change, vendor=vendor, clean=clean, clean_raw=clean_raw, tally=tally,
                 failures=failures) -> None:
            work = root / vendor / "work"
            shutil.rmtree(work, ignore_errors=True)
            (work / "export").mkdir(parents=True)
            files = sorted(clean.iterdir())
            for path, m in zip(files, change * len(files), strict=False):
                mutate(path, work / "export" / path.name, m)
            shutil.copytree(clean_raw, work / "raw")
            before = _files_bytes(work / "raw")
            try:
                report = land_export(vendor, work / "export", work / "raw")
            except DataError as exc:
                tally["refused (DataError)"] += 1
                if not any(p.name in str(exc) for p in files):
                    failures.append(f"message names no file: {exc}")
                if _files_bytes(work / "raw") != before:
                    failures.append(f"partial landing after: {exc}")
                return
            except Exception:  # a crash: the failure this benchmark looks for
                tally["crashed"] += 1
                failures.append(traceback.format_exc(limit=3))
                return
            tally["landed"] += 1
            for name, f in report.files.items():
                written = len(pd.read_csv(work / "raw" / f"{name}.csv", dtype=str,
                                          keep_default_na=False))
                expected = f.rows_in - sum(f.dropped.values()) + sum(f.added.values())
                if not f.rows_out == expected == written:
                    failures.append(f"{name}: in {f.rows_in}, dropped {f.dropped}, added "
                                    f"{f.added}, out {f.rows_out}, written {written}")

        _run(examples, body)
        rows.append({"mapping": vendor, "examples": sum(tally.values()), **tally,
                     "failures": len(failures), "seconds": round(time.perf_counter() - started)})
        print(rows[-1], flush=True)
        for failure in failures[:5]:
            print("   ", failure.replace("\n", "\n    "), flush=True)
    return rows


def data_rows(path: Path) -> int:
    """Rows of a CSV as the csv module reads them, without the header and blank lines."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return sum(1 for row in list(csv.reader(fh))[1:] if any(cell.strip() for cell in row))


def raw_contract_part(root: Path, examples: int) -> list[dict]:
    from ml.warehouse import build_warehouse

    base = small_settings(root / "base")
    generate_small(base)
    s = small_settings(root / "work")
    shutil.copytree(base.paths.raw_dir, s.paths.raw_dir)
    build_warehouse(s)  # the published marts a refused build must leave alone
    tally: Counter[str] = Counter()
    failures: list[str] = []
    started = time.perf_counter()

    def body(change) -> None:
        for i, name in enumerate(RAW_FILES):
            mutate(base.paths.raw_dir / f"{name}.csv", s.paths.raw_dir / f"{name}.csv",
                   change[i % len(change)])
        marts = _files_bytes(s.paths.marts_dir)
        try:
            summary = build_warehouse(s)
        except DataError as exc:
            tally["refused (DataError)"] += 1
            print("    refused:", " / ".join(str(exc).splitlines()[:4])[:400], flush=True)
            if _files_bytes(s.paths.marts_dir) != marts:
                failures.append(f"marts changed by a refused build: {exc!s:.200}")
            return
        except LeadScoringError as exc:
            tally[f"refused ({type(exc).__name__})"] += 1
            return
        except Exception:
            tally["crashed"] += 1
            failures.append(traceback.format_exc(limit=3))
            return
        tally["built"] += 1
        for name in RAW_FILES:
            in_file = data_rows(s.paths.raw_dir / f"{name}.csv")
            raw, ok, bad = (summary.raw_rows.get(name), summary.accepted_rows.get(name),
                            summary.rejected_rows.get(name))
            if raw is None or ok + bad != raw or raw != in_file:
                failures.append(f"{name}: file {in_file} rows, raw {raw}, accepted {ok} + "
                                f"rejected {bad}")

    _run(examples, body)
    rows = [{"raw contract": "leads, activities, conversions, attribute changes",
             "examples": sum(tally.values()), **tally, "failures": len(failures),
             "seconds": round(time.perf_counter() - started)}]
    print(rows[-1], flush=True)
    for failure in failures[:5]:
        print("   ", failure.replace("\n", "\n    "), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mapping-examples", type=int, default=100)
    parser.add_argument("--raw-examples", type=int, default=5, help="dbt builds (~20 s each)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bad-input-"))
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        tables = []
        if args.mapping_examples:
            tables.append(mappings_part(root / "mappings", args.mapping_examples))
        if args.raw_examples:
            tables.append(raw_contract_part(root / "raw", args.raw_examples))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for table in tables:
        print()
        print(pd.DataFrame(table).fillna(0).to_markdown(index=False))
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
