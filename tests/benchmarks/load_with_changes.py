"""Load with changes underneath: /predict at a steady rate while the champion moves and the
online store is rewritten.

Builds a small stack in a temporary folder (v1 @champion, v2 @challenger over --leads leads in
the Feast online store; tests/serving/serving_stack.py), starts `lead-scoring serve` (mode off:
every answer comes from @champion; registry polled every --poll seconds) and drives it with
`hey` (Debian package `hey`) at --rate req/s for --seconds, --ids lead ids rotating (one hey
process per id, each at rate/ids). Underneath, on a fixed timeline:

    phase 1  0-17 %   steady (v1)
    phase 2  17-42 %  @champion promoted to v2
    phase 3  42-58 %  rolled back to v1
    phase 4  58-75 %  the nightly refresh rewrites the online store (new mart values)
    phase 5  75-100 % v2 promoted again

It prints per phase: requests, errors (non-200), p50 and p99 (hey's client-side latency); then
the model_version check: every served answer in the prediction log is compared with @champion at
its request time. An answer may lag a move by at most the poll interval plus the load time (the
service learns of a move by polling); the script reports answers that matched the alias, those
inside that lag window, and those that match neither (goal 0), plus version flaps (an old version
served after the new one was already served).

    .venv/bin/python tests/benchmarks/load_with_changes.py             # 60 s at 500 req/s
    .venv/bin/python tests/benchmarks/load_with_changes.py --seconds 20 --rate 200
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "serving"))

from ml.config import load_settings  # noqa: E402

PHASES = [("steady v1", 0.0), ("promoted to v2", 1 / 6), ("rolled back to v1", 5 / 12),
          ("online store rewritten", 7 / 12), ("v2 promoted again", 3 / 4)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_hey() -> None:
    """hey is a Debian package: installed when absent (idempotent), as .ci/services does."""
    if shutil.which("hey"):
        return
    print("installing hey (apt-get) ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "hey"], check=True, stdout=subprocess.DEVNULL)


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError("the service did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--ids", type=int, default=20)
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--poll", type=float, default=1.0, help="registry poll interval (s)")
    args = parser.parse_args()
    ensure_hey()

    from serving_stack import build_stack, lead_id, write_marts

    from ml.online_refresh import refresh_online_store
    from ml.registry import alias_history, promote, rollback
    from ml.serving.prediction_log import read_log

    data = Path(tempfile.mkdtemp(prefix="load-changes-"))
    print(f"building a stack of {args.leads} leads in {data} ...", flush=True)
    settings = build_stack(data, n_leads=args.leads)
    tree = yaml.safe_load((ROOT / "config" / "training_config.yaml").read_text())
    tree["serving"].update({"mode": "off", "poll_interval_seconds": args.poll})
    config = data / "config.yaml"
    config.write_text(yaml.safe_dump(tree, sort_keys=False))
    settings = load_settings(config, overrides={"paths.data_dir": str(data)})
    env = {**os.environ, "LEAD_SCORING_CONFIG": str(config), "LEAD_SCORING_DATA_DIR": str(data),
           "PYTHONPATH": str(ROOT)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = open(data / "serve.log", "w")  # noqa: SIM115 - the server's lifetime
    server = subprocess.Popen([str(Path(sys.executable).with_name("lead-scoring")), "serve",
                               "--port", str(port)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=server_log)
    try:
        wait_ready(url)
        bodies = []
        for i in range(args.ids):
            body = data / f"body_{i}.json"
            body.write_text(f'{{"lead_id": "{lead_id(i * 7)}"}}')
            bodies.append(body)
        per = args.rate / args.ids
        moves: list[tuple[float, str]] = []
        started = time.time()
        procs = [subprocess.Popen(
            ["hey", "-z", f"{args.seconds:g}s", "-q", f"{per:g}", "-c", "1", "-m", "POST",
             "-T", "application/json", "-D", str(b), "-o", "csv", f"{url}/predict"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for b in bodies]

        def at(fraction: float) -> None:
            time.sleep(max(0.0, started + fraction * args.seconds - time.time()))

        def changes() -> None:
            at(PHASES[1][1])
            promote(settings, version=2, reason="load test", actor="load", force=True)
            moves.append((time.time(), "promote v2"))
            at(PHASES[2][1])
            rollback(settings, reason="load test", actor="load")
            moves.append((time.time(), "rollback v1"))
            at(PHASES[3][1])
            t0 = time.time()
            write_marts(settings, args.leads, seed=8)  # new values for every lead
            refresh = refresh_online_store(settings)
            moves.append((time.time(), f"online refresh ({time.time() - t0:.1f} s): {refresh}"))
            at(PHASES[4][1])
            promote(settings, version=2, reason="load test", actor="load", force=True)
            moves.append((time.time(), "promote v2 again"))

        mover = threading.Thread(target=changes)
        mover.start()
        rows = []
        for p in procs:
            out, _ = p.communicate()
            for row in csv.DictReader(io.StringIO(out)):
                rows.append((float(row["offset"]), float(row["response-time"]) * 1000,
                             row["status-code"]))
        mover.join()
        load = os.getloadavg()
    finally:
        server.terminate()
        server.wait(30)
        server_log.close()

    frame = pd.DataFrame(rows, columns=["offset", "ms", "status"])
    edges = [f * args.seconds for _, f in PHASES] + [float("inf")]
    frame["phase"] = pd.cut(frame["offset"], edges, right=False,
                            labels=[name for name, _ in PHASES])
    table = frame.groupby("phase", observed=False).agg(
        requests=("ms", "size"), errors=("status", lambda s: int((s != "200").sum())),
        p50_ms=("ms", lambda s: float(np.percentile(s, 50)) if len(s) else np.nan),
        p99_ms=("ms", lambda s: float(np.percentile(s, 99)) if len(s) else np.nan))
    table.loc["all"] = [len(frame), int((frame["status"] != "200").sum()),
                        float(np.percentile(frame["ms"], 50)), float(np.percentile(frame["ms"],
                                                                                    99))]
    print(f"\n/predict at {args.rate:g} req/s for {args.seconds:g} s, {args.ids} lead ids, "
          f"poll {args.poll:g} s; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(table.round(2).to_markdown())
    print("\nchanges underneath (s after start):")
    for t, what in moves:
        print(f"  {t - started:6.1f}  {what}")

    # The version served vs @champion at each answer's request time.
    history = alias_history(settings)
    history = history[(history["alias"] == "champion")
                      & (history["model_name"] == settings.registry.model_name)]
    history = history.sort_values("changed_at")
    log = read_log(settings)
    log = log[log["served"] & (log["status"] == "ok")].sort_values("logged_at")
    when = pd.to_datetime(history["changed_at"], utc=True).dt.tz_localize(None).to_numpy()
    to = history["to_version"].astype(int).to_numpy()
    logged = pd.to_datetime(log["logged_at"]).to_numpy()
    idx = np.searchsorted(when, logged, side="right") - 1
    alias_now = np.where(idx >= 0, to[np.clip(idx, 0, None)], -1)
    alias_before = np.where(idx >= 1, to[np.clip(idx - 1, 0, None)], -1)
    since_move = (logged - when[np.clip(idx, 0, None)]) / np.timedelta64(1, "s")
    served = log["model_version"].astype(int).to_numpy()
    lag_window = args.poll + 5.0  # a poll, plus loading the version (seconds, generous)
    exact = served == alias_now
    lagging = ~exact & (served == alias_before) & (since_move <= lag_window)
    wrong = ~exact & ~lagging
    # flaps: within one alias period, an answer of the old version after one of the new
    flaps = 0
    for k in np.unique(idx):
        seq = served[idx == k]
        first_new = np.flatnonzero(seq == to[k])
        if len(first_new):
            flaps += int((seq[first_new[0]:] != to[k]).sum())
    lag = [float(since_move[(idx == k) & exact].min()) for k in np.unique(idx)
           if k >= 1 and ((idx == k) & exact).any()]
    check = pd.DataFrame([{
        "served answers logged": len(log), "matched @champion": int(exact.sum()),
        f"previous version within {lag_window:g} s of a move": int(lagging.sum()),
        "inconsistent": int(wrong.sum()), "flaps": flaps,
        "max move→served lag s": round(max(lag), 2) if lag else None}])
    print("\nmodel_version of every served answer vs @champion at request time:")
    print(check.to_markdown(index=False))
    print(f"\nhey answers {len(frame)}, prediction log {len(log)} (the log may drop under "
          "overload; it counts what it drops)")
    print(f"data in {data}")


if __name__ == "__main__":
    main()
