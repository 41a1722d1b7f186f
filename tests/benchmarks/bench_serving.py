"""Benchmark: our POST /predict by lead_id against Feast's own `feast serve`, same online store.

Measured with `hey` (Debian package `hey`, installed here when absent) on loopback. Starts
`lead-scoring serve` and `feast serve` over the same Feast registry and online store, then
drives each in turn:

- serial: one connection, one request at a time (hey -c 1), --serial requests;
- rows for a lead by id (full model over the online store), for a new lead the store does not
  know (its fields in the body: the request model), and for `feast serve` alone;
- 100 / 300 / 500 req/s (--rates): --ids hey processes in parallel, each one connection with
  its own lead id at rate/ids req/s (hey -q), for --seconds.

Lead ids rotate honestly: hey sends one body per process, so each process gets a different id
drawn from the store (serial runs go through the ids one after the other), and the service
reads each lead from the online store on every request. Prints p50/p99 and errors per row.

    .venv/bin/python tests/benchmarks/bench_serving.py                 # the demo's stores
    .venv/bin/python tests/benchmarks/bench_serving.py --build 20000   # a fresh tmp stack
        [--config PATH] [--seconds 10] [--rates 100,300,500] [--serial 2000] [--ids 10] [--pin]

The demo's stores have champion == challenger after the demo (nothing to shadow); --build
registers v2 @challenger, so the shadow challenger scores every request too.

--online-store redis (the Redis of --redis-url, default $LEAD_SCORING_TEST_REDIS_URL; `make
services` starts one): both servers read Feast's Redis store instead, filled by our refresh;
first a table of our refresh (full, then unchanged) against stock `feast materialize` into
another database of the same Redis, with a check that both read back identical.

Goals (issue 11): serial p50 <= 2 ms; at 500 req/s p99 <= 5 ms with 0 errors.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "serving"))
BIN = Path(sys.executable).parent


def ensure_hey() -> None:
    """Install the Debian package `hey` when it is absent (idempotent; needs root and apt)."""
    if shutil.which("hey") is not None:
        return
    print("hey is not installed: apt-get install -y hey", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "hey"], check=True, env=env)
    if shutil.which("hey") is None:
        sys.exit("hey could not be installed: apt-get install -y hey")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, ok: str | None = None, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200 and (ok is None or ok in r.text):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not become ready")


# --pin: taskset prefixes of the servers and of the hey processes (empty: not pinned).
PIN: dict[str, list[str]] = {"server": [], "client": []}


def hey(url: str, body: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*PIN["client"], "hey", *extra, "-c", "1", "-m", "POST", "-T", "application/json",
         "-D", str(body), "-o", "csv", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def collect(procs: list[subprocess.Popen]) -> tuple[list[float], int, int]:
    """(latencies in ms of 200 answers, non-200 answers, all answers) of finished hey runs."""
    latencies: list[float] = []
    errors = total = 0
    for p in procs:
        out, _ = p.communicate()
        for row in csv.DictReader(io.StringIO(out)):
            total += 1
            if row["status-code"] == "200":
                latencies.append(float(row["response-time"]) * 1000)
            else:
                errors += 1
    return latencies, errors, total


def run_serial(url: str, bodies: list[Path], n: int) -> dict:
    started = time.perf_counter()
    procs = []
    for body in bodies:  # one id after the other, one connection
        p = hey(url, body, "-n", str(max(1, n // len(bodies))))
        p.wait()
        procs.append(p)
    return summary(*collect(procs), time.perf_counter() - started)


def run_rate(url: str, bodies: list[Path], rate: float, seconds: float) -> dict:
    per = rate / len(bodies)
    started = time.perf_counter()
    procs = [hey(url, body, "-z", f"{seconds}s", "-q", f"{per:g}") for body in bodies]
    return summary(*collect(procs), time.perf_counter() - started)


def summary(latencies: list[float], errors: int, total: int, elapsed: float) -> dict:
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"requests": total, "errors": errors, "rps": total / elapsed,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None,
                        help="Settings file (default: the project's; the demo's stores).")
    parser.add_argument("--build", type=int, default=0, metavar="LEADS",
                        help="Build a fresh stack of LEADS leads in a temporary folder instead.")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rates", default="100,300,500")
    parser.add_argument("--serial", type=int, default=2000)
    parser.add_argument("--ids", type=int, default=10)
    parser.add_argument("--online-store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--redis-url", default=os.environ.get("LEAD_SCORING_TEST_REDIS_URL"),
                        help="Redis server for --online-store redis (databases 1-15 claimed).")
    parser.add_argument("--pin", action="store_true",
                        help="Pin both servers to core 0 and hey to the other cores (taskset): "
                             "the load generator then takes no CPU from the server it measures, "
                             "as on separate machines.")
    args = parser.parse_args()
    ensure_hey()
    if args.pin:
        cores = os.cpu_count() or 1
        if cores < 2 or shutil.which("taskset") is None:
            sys.exit("--pin needs 2 or more cores and taskset (util-linux)")
        PIN["server"], PIN["client"] = ["taskset", "-c", "0"], ["taskset", "-c", f"1-{cores - 1}"]

    from ml.config import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    if args.build:
        from serving_stack import build_stack

        settings = build_stack(tmp / "data", n_leads=args.build)
        config = tmp / "config.yaml"
        config.write_text(f"paths:\n  data_dir: {settings.paths.data_dir}\n")
    else:
        settings = load_settings(args.config)
        config = args.config
    redis_env: dict[str, str] = {}
    if args.online_store == "redis":
        from bench_redis import claim_redis_db, refresh_vs_stock

        if not args.redis_url:
            sys.exit('--online-store redis needs --redis-url (or eval "$(make -s services)")')
        ours_url, stock_url = claim_redis_db(args.redis_url), claim_redis_db(args.redis_url)
        settings = refresh_vs_stock(settings, ours_url, stock_url)
        redis_env = {"LEAD_SCORING_ONLINE_STORE_URL": ours_url}
    repo = tmp / "feast_repo"
    repo.mkdir()
    import yaml

    from ml.feature_store import online_store_config, registry_config

    (repo / "feature_store.yaml").write_text(yaml.safe_dump({
        "project": "lead_scoring", "provider": "local",
        "registry": registry_config(str(settings.paths.feast_registry_url), 60),
        "offline_store": {"type": "duckdb"},
        "online_store": online_store_config(settings.paths.online_store_url),
        "entity_key_serialization_version": 3, "auth": {"type": "no_auth"},
    }))

    ids_all = pd.read_parquet(settings.paths.marts_dir / "lead_features_latest.parquet",
                              columns=["lead_id"])["lead_id"].tolist()
    ids = random.Random(0).sample(ids_all, args.ids)
    bodies: dict[str, list[Path]] = {"ours": [], "feast": [], "request": []}
    for k, lead in enumerate(ids):
        ours_body, feast_body = tmp / f"ours_{k}.json", tmp / f"feast_{k}.json"
        ours_body.write_text(json.dumps({"lead_id": lead}))
        feast_body.write_text(json.dumps({"feature_service": settings.features.feature_service,
                                          "entities": {"lead_id": [lead]}}))
        bodies["ours"].append(ours_body)
        bodies["feast"].append(feast_body)
        # A lead the online store does not know, as a web form sends it: the request model.
        new_body = tmp / f"request_{k}.json"
        new_body.write_text(json.dumps(
            {"lead_id": f"new-{k}", "lead_source": ["Web", "Referral", "Event"][k % 3],
             "industry": "Technology", "company_size": 10 + 20 * k,
             "engagement_score": 5.0 * k, "website_visits": k, "email_opens": k // 2}))
        bodies["request"].append(new_body)

    ours, feast = free_port(), free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "LEAD_SCORING_PREDICTION_LOG_URL": f"sqlite:///{tmp / 'predictions.db'}",
           **redis_env}
    serve = [str(BIN / "lead-scoring"), "serve", "--port", str(ours)]
    if config is not None:
        serve += ["--config", str(config)]
    procs = [
        subprocess.Popen([*PIN["server"], *serve], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(tmp / "serve.log", "w")),  # noqa: SIM115
        subprocess.Popen([*PIN["server"], str(BIN / "feast"), "-c", str(repo), "serve",
                          "-h", "127.0.0.1", "-p", str(feast), "--no-access-log"], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(tmp / "feast.log", "w")),  # noqa: SIM115
    ]
    targets = {"ours": f"http://127.0.0.1:{ours}/predict",
               "request": f"http://127.0.0.1:{ours}/predict",
               "feast": f"http://127.0.0.1:{feast}/get-online-features"}
    rows: list[tuple[str, str, dict]] = []
    try:
        wait_for(f"http://127.0.0.1:{ours}/ready", ok='"ready"')
        wait_for(f"http://127.0.0.1:{feast}/health")
        model = httpx.get(f"http://127.0.0.1:{ours}/model").json()
        for name, url in targets.items():
            run_serial(url, bodies[name][:2], 200)  # warm-up
            rows.append((name, "serial", run_serial(url, bodies[name], args.serial)))
            for rate in (float(r) for r in args.rates.split(",")):
                rows.append((name, f"{rate:g} req/s",
                             run_rate(url, bodies[name], rate, args.seconds)))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:  # feast serve's workers can outlive a TERM
                p.kill()
                p.wait(10)
    load = os.getloadavg()[0]
    print(f"\nonline store: {args.online_store}")
    pinned = (f"servers pinned to core 0, hey to cores {PIN['client'][-1]}" if args.pin
              else "servers and hey not pinned (sharing every core)")
    print(f"{pinned}; hey on loopback, {args.ids} lead ids rotating, {args.seconds:g} s per rate, "
          f"{os.cpu_count()} cores, load average {load:.1f} at the end; mode "
          f"{model['mode']}, champion v{model['champion']['version']}, challenger "
          f"{'v' + model['challenger']['version'] if model['challenger'] else 'none'}")
    print(f"{'target':40} {'load':>10} {'sent':>6} {'err':>5} {'rps':>6} {'p50 ms':>8} "
          f"{'p99 ms':>8}")
    label = {"ours": "ours POST /predict (by id)", "request": "ours POST /predict (new lead)",
             "feast": "feast serve POST /get-online-features"}
    for name, load_name, r in rows:
        print(f"{label[name]:40} {load_name:>10} {r['requests']:6d} {r['errors']:5d} "
              f"{r['rps']:6.0f} {r['p50']:8.2f} {r['p99']:8.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
