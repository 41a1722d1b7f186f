"""Benchmark: a few leads' reasons, one lead at a time against the vectorised path.

`reasons.explain` explains up to `reasons.ONE_BY_ONE_ROWS` leads one by one in plain Python (the
service's micro-batches) and more leads vectorised (the nightly run). This prints what each path
costs per call for batch sizes around that threshold, on the leads the service scores: the
contract's features as the service holds them (one object array per feature), with a fabricated
XGBoost scorer's contributions.

Run: `PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_reasons.py [--repeat 200]`
(best of 3 rounds of --repeat calls per cell, milliseconds per call).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ml"))
from _scoring_fixtures import make_features, make_scorer  # noqa: E402

from ml import reasons  # noqa: E402

SIZES = (1, 4, 16, 64, 128, 256, 512)


def per_call_ms(contributions: np.ndarray, names: list[str], values: dict[str, np.ndarray],
                limit: int, repeat: int) -> float:
    """Best of 3 rounds of `repeat` explain calls, with `ONE_BY_ONE_ROWS` set to `limit`."""
    saved = reasons.ONE_BY_ONE_ROWS
    reasons.ONE_BY_ONE_ROWS = limit
    try:
        reasons.explain(contributions, names, values, 3)  # warm-up: templates, memos
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(repeat):
                reasons.explain(contributions, names, values, 3)
            best = min(best, (time.perf_counter() - started) / repeat * 1000)
        return best
    finally:
        reasons.ONE_BY_ONE_ROWS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="calls per round")
    args = parser.parse_args()
    scorer, _ = make_scorer()
    features = make_features(max(SIZES), seed=5)
    names = list(scorer.feature_names)
    contributions = scorer.contributions(features)[0].astype(np.float64)
    # as the service holds a micro-batch: one object array per feature, None for null
    records = features[names].astype(object).where(features[names].notna(), None)
    print(f"reasons of a few leads ({len(names)} features, 3 per side), ms per explain call; "
          f"one by one up to ONE_BY_ONE_ROWS = {reasons.ONE_BY_ONE_ROWS}\n")
    print("| leads | one by one | vectorised | faster |")
    print("|---|---|---|---|")
    for size in SIZES:
        values = {n: records[n].to_numpy()[:size] for n in names}
        one = per_call_ms(contributions[:size], names, values, max(SIZES), args.repeat)
        vec = per_call_ms(contributions[:size], names, values, 0, args.repeat)
        print(f"| {size} | {one:.3f} | {vec:.3f} | "
              f"{'one by one' if one < vec else 'vectorised'} |", flush=True)


if __name__ == "__main__":
    main()
