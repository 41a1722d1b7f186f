"""Drift detection table: generated data with each drift kind injected, flagged or not.

For each scenario the generator writes a small CRM export (the same seed, so only the drift
differs), dbt builds the marts, and `ml.monitoring.drift.data_drift` compares the current scoring
frame (`lead_features_latest`, the as-of snapshot) with a reference window of `lead_features`
snapshots before the drift starts (in steady state: after the first max_lead_age_days, when the
age mix of open leads has settled). Prints injected vs flagged, per scenario.

Run: `.venv/bin/python tests/benchmarks/drift_detection.py [--leads 4000]` (about 15 s per
scenario, most of it dbt).
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from ml.config import load_settings
from ml.data.generator import Drift, generate
from ml.model import CATEGORICAL_FEATURES, feature_columns
from ml.monitoring.drift import data_drift
from ml.warehouse import build_warehouse

END = date(2026, 11, 1)
DAYS = 300


def scenarios(drift_start: date) -> dict[str, list[Drift]]:
    return {
        "none": [],
        "lead_source_mix (Event x4)": [Drift("lead_source_mix", drift_start, "Event", 4.0)],
        "engagement_level (x2)": [Drift("engagement_level", drift_start, None, 2.0)],
        "industry_conversion (Technology x3)": [
            Drift("industry_conversion", drift_start, "Technology", 3.0)
        ],
    }


def scenario(
    name: str, drifts: list[Drift], leads: int, root: Path, reference: tuple[date, date]
) -> dict[str, object]:
    settings = load_settings(overrides={"paths.data_dir": str(root / name.split()[0])})
    generate(
        settings.paths.raw_dir,
        settings.paths.truth_dir,
        n_leads=leads,
        days=DAYS,
        end_date=END,
        seed=11,
        drifts=drifts,
    )
    build_warehouse(settings)
    marts = settings.paths.marts_dir
    features = feature_columns()
    history = pd.read_parquet(marts / "lead_features.parquet")
    ts = pd.to_datetime(history["snapshot_ts"], utc=True)
    lo, hi = (pd.Timestamp(d, tz="UTC") for d in reference)
    reference = history[(ts >= lo) & (ts < hi)]
    current = pd.read_parquet(marts / "lead_features_latest.parquet")
    result = data_drift(
        reference,
        current,
        features,
        list(CATEGORICAL_FEATURES),
        bins=settings.monitoring.psi_bins,
        psi_threshold=settings.monitoring.psi_threshold,
    )
    flagged = result[result["psi_drifted"]]
    top = result.iloc[0]
    return {
        "injected": name,
        "reference rows": len(reference),
        "current rows": len(current),
        "flagged (PSI > 0.2)": ", ".join(f"{r.feature} {r.psi:.2f}" for r in flagged.itertuples())
        or "none",
        "max PSI": f"{top.psi:.3f} ({top.feature})",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=4000)
    parser.add_argument(
        "--drift-age-days",
        type=int,
        default=120,
        help="days between the drift's start and the as-of date",
    )
    args = parser.parse_args()
    drift_start = END - timedelta(days=args.drift_age_days)
    # reference: 60 days of steady state (after the first max_lead_age_days) before the drift
    reference = (drift_start - timedelta(days=60), drift_start)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, drifts in scenarios(drift_start).items():
            rows.append(scenario(name, drifts, args.leads, Path(tmp), reference))
            print(rows[-1], flush=True)
    pd.set_option("display.max_colwidth", 200)
    pd.set_option("display.width", 250)
    print(
        f"\nreference snapshots {reference[0]}..{reference[1]}, drift from {drift_start}, "
        f"current = as-of snapshot ({END})"
    )
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
