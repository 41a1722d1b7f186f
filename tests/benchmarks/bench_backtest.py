"""Per-fold figures of the backtest on a demo's data: the honest cut against the old one.

The honest cut (the default) trains and validates only on snapshots whose labels had matured by
the fold's origin (embargo = the label window). The old cut (embargo 0) trained right up to the
origin, so its training labels ("converts within 60 days") were decided by conversions inside the
test window: the figures it reported were inflated by label leakage. Same folds, same families,
same test rows; only the embargo differs.

Run after `make demo` (or against any data dir holding a training set):
    LEAD_SCORING_DATA_DIR=data .venv/bin/python tests/benchmarks/bench_backtest.py
Prints one row per fold and family, then the means.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from ml.backtest import fold_metrics
from ml.config import load_settings
from ml.evaluate import evaluate
from ml.model import ORACLE
from ml.retrain import training_set_path
from ml.train import backtest_origins, cut_at, fit_tuned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["logistic", "xgboost", "rules"])
    args = parser.parse_args()
    settings = load_settings()
    frame = pd.read_parquet(training_set_path(settings))
    cuts = {"honest": None, "old (embargo 0)": 0}
    rows = []
    t0 = time.perf_counter()
    for origin in backtest_origins(frame, settings):
        for cut, embargo in cuts.items():
            split = cut_at(frame, origin, settings, embargo_days=embargo)
            truth = split.test[ORACLE].to_numpy() if ORACLE in split.test.columns else None
            for family in args.families:
                fit = fit_tuned(split, settings, family=family)
                m = fold_metrics(evaluate(fit.scorer, split.test, settings,
                                          truth_probability=truth))
                rows.append({"origin": str(origin), "cut": cut, "family": family,
                             "train_rows": len(split.train), "test_rows": len(split.test),
                             "auc": m["auc"], "oracle_auc": m["oracle_auc"],
                             "lift_share": m["lift_share_of_oracle"], "brier": m["brier"]})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(table.round(4).to_string(index=False))
    means = table.groupby(["cut", "family"])[["auc", "lift_share", "brier"]].mean().round(4)
    print("\nmeans over folds:\n" + means.to_string())
    for cut in cuts:
        part = means.loc[cut, "auc"]
        print(f"{cut}: best family {part.idxmax()} (AUC {part.max():.4f})")
    print(f"\n{len(rows)} fits in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
