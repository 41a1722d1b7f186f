"""Benchmark: the garbage collector's pauses in the real-time service, with and without
`serving.freeze_heap` (gc.freeze after each model swap).

Each variant runs in its own process over the demo's stores (`make demo` first): the service in
process (FastAPI's TestClient, no network), `--requests` POST /predict one after the other,
alternating a stored lead by id and the README's new-lead payload. CPython's collections are
timed through `gc.callbacks`. Prints, per variant: full (generation 2) collections and their
longest pause, the requests' p99, p99.9 and slowest.

    .venv/bin/python tests/benchmarks/bench_gc_pauses.py [--requests 30000] [--config PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def run_variant(freeze: bool, requests: int, config: Path | None) -> dict:
    import pandas as pd
    from fastapi.testclient import TestClient

    from ml.config import load_settings
    from ml.serving.app import create_app
    from ml.serving.schemas import ORIGINAL_EXAMPLE

    settings = load_settings(config, overrides={"serving.freeze_heap": freeze})
    lead_id = pd.read_parquet(settings.paths.marts_dir / "lead_features_latest.parquet",
                              columns=["lead_id"])["lead_id"].iloc[0]
    pauses: list[float] = []
    started = [0.0]

    def timer(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0]) * 1000)

    with TestClient(create_app(settings)) as client:  # as served: the prediction log on
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the service did not become ready")
            time.sleep(0.1)
        bodies = [{"lead_id": lead_id}, ORIGINAL_EXAMPLE]
        for body in bodies * 100:  # warm-up
            client.post("/predict", json=body)
        tracked = len(gc.get_objects())
        gc.callbacks.append(timer)
        latencies = np.empty(requests)
        for i in range(requests):
            t = time.perf_counter()
            client.post("/predict", json=bodies[i % 2])
            latencies[i] = (time.perf_counter() - t) * 1000
        gc.callbacks.remove(timer)
    return {"freeze_heap": freeze, "requests": requests, "tracked_objects": tracked,
            "frozen_objects": gc.get_freeze_count(), "full_collections": len(pauses),
            "longest_pause_ms": max(pauses, default=0.0),
            "p99_ms": float(np.percentile(latencies, 99)),
            "p999_ms": float(np.percentile(latencies, 99.9)),
            "max_ms": float(latencies.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--variant", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # one variant, in a process of its own (gc state is per process)
        print(json.dumps(run_variant(args.variant == "on", args.requests, args.config)))
        return
    rows = []
    for variant in ("off", "on"):
        cmd = [sys.executable, __file__, "--variant", variant, "--requests", str(args.requests)]
        if args.config:
            cmd += ["--config", str(args.config)]
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{args.requests} POST /predict in process, by id and new lead alternating")
    print(f"{'freeze_heap':>11} {'objects':>8} {'frozen':>8} {'full GCs':>8} {'longest ms':>10} "
          f"{'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7}")
    for r in rows:
        print(f"{str(r['freeze_heap']):>11} {r['tracked_objects']:8d} {r['frozen_objects']:8d} "
              f"{r['full_collections']:8d} {r['longest_pause_ms']:10.1f} {r['p99_ms']:7.2f} "
              f"{r['p999_ms']:8.2f} {r['max_ms']:7.1f}")


if __name__ == "__main__":
    main()
