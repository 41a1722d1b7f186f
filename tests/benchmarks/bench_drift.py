"""Drift benchmark: 1M current × 1M reference rows, every model feature, PSI + KS/chi-square.

Run: `.venv/bin/python tests/benchmarks/bench_drift.py [--rows 1000000]`. Prints the wall time of
`ml.monitoring.drift.data_drift` and whether it meets the 10 s budget of the monitoring issue.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from ml.contract import BUDGET_BANDS, INDUSTRIES, LEAD_SOURCES, LICENSE_TYPES
from ml.model import CATEGORICAL_FEATURES, feature_columns

BUDGET_S = 10.0
LEVELS = {
    "lead_source": LEAD_SOURCES,
    "industry": INDUSTRIES,
    "country": [f"Country {i}" for i in range(40)],
    "license_type": LICENSE_TYPES,
    "budget_band": BUDGET_BANDS,
}
FLOAT_FEATURES = {
    "days_since_last_activity",
    "email_click_rate_90d",
    "pricing_view_rate_90d",
    "engagement_score",
}


def synthetic_features(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """A frame shaped like the `lead_features` mart: strings, small counts, a few doubles."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for name in feature_columns():
        if name in CATEGORICAL_FEATURES:
            levels = np.array(LEVELS[name], dtype=object)
            data[name] = levels[rng.integers(0, len(levels), n)]
        elif name in FLOAT_FEATURES:
            values = rng.gamma(2.0, 10.0 + shift, n)
            values[rng.random(n) < 0.05] = np.nan
            data[name] = values
        elif name == "company_size":
            data[name] = rng.lognormal(3.0, 1.5, n).astype(np.int64)
        elif name == "days_since_created":
            data[name] = rng.integers(0, 121, n)
        else:
            data[name] = rng.poisson(1.5 + shift, n)
    return pd.DataFrame(data)


def main() -> None:
    from ml.monitoring.drift import data_drift

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    reference = synthetic_features(args.rows, seed=1)
    current = synthetic_features(args.rows, seed=2, shift=0.1)
    features = feature_columns()
    started = time.perf_counter()
    result = data_drift(reference, current, features, list(CATEGORICAL_FEATURES))
    seconds = time.perf_counter() - started
    print(
        f"data_drift: {args.rows:,} current x {args.rows:,} reference rows, "
        f"{len(features)} features ({len(CATEGORICAL_FEATURES)} categorical): {seconds:.2f} s "
        f"(budget {BUDGET_S:.0f} s: {'ok' if seconds <= BUDGET_S else 'OVER'}; "
        f"{seconds / len(features) * 1000:.0f} ms per feature)"
    )
    print(result.head(5).to_string(index=False))


if __name__ == "__main__":
    main()
