"""Scale figures: DuckDB on one machine vs Spark local[2], step by step, at growing lead counts.

Run: `PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_scale.py [--leads 100000 1000000]
[--engines duckdb spark] [--spark-steps build pit score] [--days 240] [--train-leads 20000]
[--data-dir DIR] [--reuse-raw] [--spark-driver-memory 8g] [--top-nodes 12]`
(Spark needs Java 17 and the `spark` extra: `make demo-spark` installs both.)

For each lead count, one generated raw folder (the generator, seeded) is built by each engine, as
`engine: duckdb | spark` does it in a nightly run, timing:

- dbt build: `ml.warehouse.build_warehouse` (dbt-duckdb, or dbt-spark in a local[2] session),
  models + tests + the marts exported as Parquet;
- PIT training set: `feast apply` + `ml.training_set.build_training_set` (Feast's DuckDB offline
  store, or its Spark offline store over the Spark-built marts);
- batch scoring: every open lead of the latest-features mart scored with reasons
  (`ml.scoring.score_frame` on one machine, `ml.spark.scoring.spark_score_frame` on Spark); the
  CRM write after it is the same single-machine write for both (bench_batch_scoring.py times it).

After each dbt build the slowest nodes of its run_results.json are printed (models and data
tests, seconds each, and the totals per kind): where a build's time goes.

At 1M leads Spark's build and PIT set take long: run them as two commands over one
`--data-dir` (`--spark-steps build`, then `--spark-steps pit --reuse-raw`, which keeps the raw
files and the Spark-built marts), each one's figures printed as it ends.

`--spark-steps score` skips Spark's dbt build and PIT set (at 1M leads they take too long on
two cores) and scores the DuckDB-built latest-features mart on Spark: the same rows the Spark
build publishes (tests/dbt/test_spark_parity.py), so the scoring step is timed alone.

The scorer is fitted once per lead count on the DuckDB training set's rows of `--train-leads`
leads (untimed: training is not a step that changes with the engine). Prints one table with the
load average before and after each step: the machine is shared, read the figures with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.config import Settings, load_settings

END = date(2026, 11, 1)
ENGINES = ("duckdb", "spark")
SPARK_STEPS = ("build", "pit", "score")


def engine_settings(data_dir: Path, raw_dir: Path, engine: str,
                    driver_memory: str | None = None) -> Settings:
    # real volumes: compiled Spark queries (spark.small_data stays off)
    overrides = {
        "engine": engine,
        "paths.data_dir": str(data_dir / engine),
        "paths.raw_dir": str(raw_dir),
    }
    if driver_memory:
        overrides["spark.driver_memory"] = driver_memory
    return load_settings(overrides=overrides)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """(result, seconds, load average before, after)."""
    before = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, before, os.getloadavg()[0]


def print_dbt_timings(target_dir: Path, engine: str, top: int) -> None:
    """The `top` slowest nodes of the build's run_results.json, and the seconds per kind."""
    path = target_dir / "run_results.json"
    if top <= 0 or not path.is_file():
        return
    results = json.loads(path.read_text())["results"]
    nodes = pd.DataFrame({
        "kind": [r["unique_id"].split(".")[0] for r in results],
        "node": [r["unique_id"].split(".", 2)[-1][:90] for r in results],
        "s": [round(r["execution_time"], 1) for r in results],
    })
    totals = nodes.groupby("kind")["s"].agg(["count", "sum"]).round(1)
    print(f"\n{engine} dbt build, slowest {top} of {len(nodes)} nodes (seconds each; nodes run "
          f"on the profile's threads at once):")
    print(nodes.sort_values("s", ascending=False).head(top).to_string(index=False))
    print(totals.to_string(), flush=True)


def run_size(n_leads: int, days: int, engines: list[str], train_leads: int, root: Path,
             rows: list[dict[str, Any]], spark_steps: list[str] | None = None,
             top_nodes: int = 12, driver_memory: str | None = None,
             reuse_raw: bool = False) -> None:
    from ml.data.generator import generate
    from ml.feature_store import apply_feature_repo
    from ml.scoring import score_frame
    from ml.train import final_split, fit_scorer
    from ml.training_set import build_training_set
    from ml.warehouse import build_warehouse

    data_dir = root / f"leads_{n_leads}"
    raw_dir = data_dir / "raw"
    if not (reuse_raw and (raw_dir / "activities.csv").is_file()):
        _, seconds, lb, la = timed(lambda: generate(raw_dir, data_dir / "truth",
                                                    n_leads=n_leads, days=days, end_date=END,
                                                    seed=7))
        activities = sum(1 for _ in open(raw_dir / "activities.csv")) - 1  # noqa: SIM115
        rows.append({"leads": n_leads, "engine": "-", "step": "generate raw (not compared)",
                     "rows": activities, "s": seconds, "load before": lb, "load after": la})
    as_of = datetime.combine(END, datetime.min.time())
    scorer = None
    for engine in engines:
        settings = engine_settings(data_dir, raw_dir, engine, driver_memory)
        steps = SPARK_STEPS if engine != "spark" else tuple(spark_steps or SPARK_STEPS)
        latest = settings.paths.marts_dir / "lead_features_latest.parquet"
        if "build" in steps:
            summary, seconds, lb, la = timed(lambda s=settings: build_warehouse(s, as_of=as_of))
            marts = summary.marts
            n_rows = len(pd.read_parquet(marts["lead_features"], columns=["lead_id"]))
            rows.append({"leads": n_leads, "engine": engine,
                         "step": "dbt build (lead_features rows)", "rows": n_rows, "s": seconds,
                         "load before": lb, "load after": la})
            print_dbt_timings(Path(settings.paths.warehouse).parent / "dbt_target", engine,
                              top_nodes)
        else:
            # the DuckDB build's mart: the same rows a Spark build publishes (parity tests)
            latest = engine_settings(data_dir, raw_dir, "duckdb").paths.marts_dir / latest.name

        def training(s: Settings = settings) -> pd.DataFrame:
            apply_feature_repo(s)
            return build_training_set(s, with_truth=False)

        if "pit" in steps:
            frame, seconds, lb, la = timed(training)
            rows.append({"leads": n_leads, "engine": engine, "step": "PIT training set (Feast)",
                         "rows": len(frame), "s": seconds, "load before": lb, "load after": la})
            if scorer is None and "score" in steps:
                leads = frame["lead_id"].drop_duplicates()
                keep = leads.sample(min(train_leads, len(leads)), random_state=1)
                sample = frame[frame["lead_id"].isin(set(keep))].reset_index(drop=True)
                scorer = fit_scorer(final_split(sample, settings), settings).scorer
            del frame
        if "score" not in steps:
            print_table(rows)
            continue
        if scorer is None:
            raise SystemExit("no scorer: the first engine must build the PIT training set")
        if engine == "spark":
            from ml.spark.scoring import spark_score_frame

            scores, seconds, lb, la = timed(
                lambda s=settings, m=scorer, p=latest: spark_score_frame(s, m, p))
        else:
            scores, seconds, lb, la = timed(
                lambda s=settings, m=scorer, p=latest: score_frame(m, pd.read_parquet(p), s))
        step = "batch scoring (+ reasons)" if "build" in steps else \
            "batch scoring (+ reasons; DuckDB-built mart)"
        rows.append({"leads": n_leads, "engine": engine, "step": step,
                     "rows": len(scores), "s": seconds, "load before": lb, "load after": la})
        print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(rows)
    frame["s"] = frame["s"].round(1)
    frame[["load before", "load after"]] = frame[["load before", "load after"]].round(1)
    print("\n" + frame.to_string(index=False), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--spark-steps", nargs="+", choices=SPARK_STEPS,
                        default=list(SPARK_STEPS),
                        help="Spark's steps (without build: Spark scores the DuckDB-built mart)")
    parser.add_argument("--top-nodes", type=int, default=12,
                        help="slowest dbt nodes printed after each build (0: none)")
    parser.add_argument("--days", type=int, default=240, help="days of CRM history generated")
    parser.add_argument("--train-leads", type=int, default=20_000,
                        help="leads whose training rows fit the scorer (untimed)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where to generate and build (default: a temporary folder)")
    parser.add_argument("--reuse-raw", action="store_true",
                        help="keep the raw files already generated under --data-dir (same "
                             "seed, leads and days), e.g. to run Spark's PIT after its build")
    parser.add_argument("--spark-driver-memory", default=None,
                        help="spark.driver_memory for this run (default: the settings' value)")
    args = parser.parse_args()
    if "spark" in args.engines and "score" in args.spark_steps \
            and "build" not in args.spark_steps and "duckdb" not in args.engines:
        parser.error("--spark-steps without build scores the DuckDB-built mart: "
                     "add --engines duckdb")
    logging.basicConfig(level=logging.WARNING)
    print(f"{os.cpu_count()} cores; engines {', '.join(args.engines)}; {args.days} days of "
          f"history; numpy {np.__version__}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        root = args.data_dir or Path(tmp)
        for n in args.leads:
            run_size(n, args.days, args.engines, args.train_leads, root, rows,
                     args.spark_steps, args.top_nodes, args.spark_driver_memory,
                     args.reuse_raw)
    print("\nFinal table above (s = wall-clock seconds; load = 1-minute load average).")


if __name__ == "__main__":
    main()
