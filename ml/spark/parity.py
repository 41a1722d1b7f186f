"""Engine parity, end to end, with a verdict per step (`make demo-spark`).

On one generated raw folder (with no clean-up of its own: whatever the generator writes), build
the warehouse with dbt-duckdb and with dbt-spark (local Spark), then compare, after ordering:
every mart, every raw row's quarantine outcome (base_crm__* tables), the point-in-time training
set Feast builds from each engine's marts (DuckDB vs Spark offline store), and the nightly scores
of the open leads (a model fitted on the DuckDB training set; `score_frame` on one machine vs the
Spark job of ml/spark/scoring.py). Prints one line per comparison: "identical" or the first
difference.

    python -m ml.spark.parity [--leads 2000] [--days 240] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from ml.config import Settings, load_settings

log = logging.getLogger(__name__)

END = date(2026, 11, 1)


@dataclass(frozen=True)
class Verdict:
    what: str
    rows: int
    identical: bool
    detail: str = ""

    def line(self) -> str:
        status = "identical" if self.identical else f"DIFFERENT: {self.detail}"
        return f"{self.what:<42} {self.rows:>8,} rows  {status}"


def ordered(frame: pd.DataFrame, key: list[str] | None = None) -> pd.DataFrame:
    """Columns by name, rows sorted by `key` (default every column's text)."""
    frame = frame[sorted(frame.columns)]
    keys = frame[key] if key else frame.astype(str)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def compare(what: str, duck: pd.DataFrame, spark: pd.DataFrame, key: list[str] | None = None,
            rtol: float = 1e-9) -> Verdict:
    """The verdict on two frames that should hold the same rows (floats to `rtol`)."""
    if sorted(duck.columns) != sorted(spark.columns):
        diff = sorted(set(duck.columns) ^ set(spark.columns))
        return Verdict(what, len(duck), False, f"columns differ: {diff}")
    if len(duck) != len(spark):
        return Verdict(what, len(duck), False, f"{len(duck)} rows on DuckDB, {len(spark)} on Spark")
    try:
        pd.testing.assert_frame_equal(
            ordered(duck, key), ordered(spark, key), check_dtype=False, rtol=rtol
        )
    except AssertionError as exc:
        return Verdict(what, len(duck), False, " ".join(str(exc).split())[:300])
    return Verdict(what, len(duck), True)


def engine_settings(data_dir: Path, raw_dir: Path, engine: str) -> Settings:
    return load_settings(
        overrides={
            "engine": engine,
            # a few thousand leads: each query's fixed cost dominates (ml/config.py)
            "spark.small_data": True,
            "paths.data_dir": str(data_dir / engine),
            "paths.raw_dir": str(raw_dir),
        }
    )


def run_parity(data_dir: Path, n_leads: int, days: int) -> list[Verdict]:
    """Generate, build and compare on both engines; the verdicts in flow order."""
    from ml.data.generator import generate
    from ml.feature_store import apply_feature_repo
    from ml.scoring import score_frame
    from ml.spark.scoring import spark_score_frame
    from ml.train import final_split, fit_scorer
    from ml.training_set import TIMESTAMP, build_training_set
    from ml.warehouse import MARTS, RAW_FILES, _connect_read_only, build_warehouse

    raw_dir, truth_dir = data_dir / "raw", data_dir / "truth"
    generate(raw_dir, truth_dir, n_leads=n_leads, days=days, end_date=END, seed=7)
    as_of = datetime.combine(END, datetime.min.time())
    engines = {e: engine_settings(data_dir, raw_dir, e) for e in ("duckdb", "spark")}
    summaries = {}
    for engine, settings in engines.items():
        started = time.perf_counter()
        summaries[engine] = build_warehouse(settings, as_of=as_of)
        log.info("%s build: %.0f s", engine, time.perf_counter() - started)
    verdicts = [
        compare(
            f"mart {mart}",
            pd.read_parquet(summaries["duckdb"].marts[mart]),
            pd.read_parquet(summaries["spark"].marts[mart]),
        )
        for mart in MARTS
    ]
    for name in RAW_FILES:
        frames = []
        for settings in engines.values():
            con = _connect_read_only(settings)
            try:
                frames.append(con.sql(f"select * from base_crm__{name}").df())
            finally:
                con.close()
        verdicts.append(compare(f"raw rows + rejections {name}", *frames))

    training = {}
    for engine, settings in engines.items():
        apply_feature_repo(settings)
        training[engine] = build_training_set(settings, with_truth=False)
    verdicts.append(
        compare("PIT training set (Feast)", training["duckdb"], training["spark"],
                key=[TIMESTAMP, "lead_id"])
    )

    duck = engines["duckdb"]
    scorer = fit_scorer(final_split(training["duckdb"], duck), duck).scorer
    latest = "lead_features_latest.parquet"
    local = score_frame(scorer, pd.read_parquet(duck.paths.marts_dir / latest), duck)
    spark = spark_score_frame(engines["spark"], scorer, engines["spark"].paths.marts_dir / latest)
    verdicts.append(
        compare("batch scores + reasons", local, spark, key=["lead_id"], rtol=0.0)
    )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where to generate and build (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lead-scoring-parity-") as tmp:
        verdicts = run_parity(args.data_dir or Path(tmp), args.leads, args.days)
    print(f"\nEngine parity, DuckDB vs Spark ({args.leads:,} leads over {args.days} days):")
    for verdict in verdicts:
        print("  " + verdict.line())
    ok = all(v.identical for v in verdicts)
    print(f"{'all identical' if ok else 'NOT all identical'} "
          f"({time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
