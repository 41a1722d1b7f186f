"""Benchmark: our /predict by lead_id against Feast's own `feast serve`, same online store.

Builds a stack in a temporary folder (fabricated marts of --leads leads → Feast apply → online
refresh → two registered models: v1 @champion, v2 @challenger), starts `lead-scoring serve` and
`feast serve` on loopback, and drives each in turn at a fixed rate with an open-loop load
generator (requests are sent on schedule whether or not earlier ones answered; latency counts
from the scheduled instant, so queueing shows). Prints p50/p95/p99 and errors for both.

    .venv/bin/python tests/benchmarks/bench_serving.py [--leads 100000] [--rate 500]
        [--seconds 30] [--mode shadow]

Goal (issue 6): our p99 <= 5 ms and no worse than Feast's server, which only looks features up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "serving"))
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not become ready")


async def open_loop(port: int, path: str, bodies: list[bytes], rate: float, seconds: float,
                    connections: int = 64) -> dict[str, float]:
    """Send len = rate * seconds POSTs on schedule over keep-alive connections."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    n = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: {}\r\n\r\n")

    async def one(body: bytes, scheduled: float) -> None:
        nonlocal errors
        reader, writer = await pool.get()
        try:
            writer.write(head.format(len(body)).encode() + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if b" 200 " not in status_line:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)
            pool.put_nowait((reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    start = time.perf_counter() + 0.2
    tasks = []
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(bodies[i % len(bodies)], scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    lat = np.array(latencies) * 1000
    return {"requests": n, "errors": errors, "achieved_rps": n / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--mode", default="shadow", choices=["off", "shadow", "canary", "ab"])
    args = parser.parse_args()

    from serving_stack import build_stack

    tmp = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    t0 = time.perf_counter()
    settings = build_stack(tmp / "data", n_leads=args.leads)
    print(f"stack of {args.leads} leads built in {time.perf_counter() - t0:.0f} s under {tmp}")
    config = tmp / "config.yaml"
    config.write_text(f"paths:\n  data_dir: {settings.paths.data_dir}\n"
                      f"serving:\n  mode: {args.mode}\n")
    repo = tmp / "feast_repo"
    repo.mkdir()
    feast_dir = settings.paths.feast_dir
    (repo / "feature_store.yaml").write_text(
        "project: lead_scoring\nprovider: local\n"
        f"registry:\n  registry_type: file\n  path: {feast_dir / 'registry.db'}\n"
        "  cache_ttl_seconds: 60\noffline_store:\n  type: duckdb\n"
        f"online_store:\n  type: sqlite\n  path: {feast_dir / 'online_store.db'}\n"
        "entity_key_serialization_version: 3\nauth:\n  type: no_auth\n")

    ours, feast = free_port(), free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen([str(BIN / "lead-scoring"), "serve", "--config", str(config),
                          "--port", str(ours)], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(tmp / "serve.log", "w")),  # noqa: SIM115
        subprocess.Popen([str(BIN / "feast"), "-c", str(repo), "serve", "-h", "127.0.0.1",
                          "-p", str(feast), "--no-access-log"], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(tmp / "feast.log", "w")),  # noqa: SIM115
    ]
    try:
        wait_for(f"http://127.0.0.1:{ours}/ready")
        wait_for(f"http://127.0.0.1:{feast}/health")
        rng = random.Random(0)
        ids = [f"L{rng.randrange(args.leads):07d}" for _ in range(20_000)]
        ours_bodies = [json.dumps({"lead_id": i}).encode() for i in ids]
        feast_bodies = [json.dumps({"feature_service": settings.features.feature_service,
                                    "entities": {"lead_id": [i]}}).encode() for i in ids]
        # warm-up, then the measured runs, one after the other on the same machine
        asyncio.run(open_loop(ours, "/predict", ours_bodies, 100, 2))
        asyncio.run(open_loop(feast, "/get-online-features", feast_bodies, 50, 2))
        results = {
            f"ours POST /predict (mode {args.mode})": asyncio.run(
                open_loop(ours, "/predict", ours_bodies, args.rate, args.seconds)),
            "feast serve POST /get-online-features": asyncio.run(
                open_loop(feast, "/get-online-features", feast_bodies, args.rate,
                          args.seconds)),
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    print(f"\n{args.rate:.0f} req/s open loop for {args.seconds:.0f} s, {args.leads} leads, "
          f"{os.cpu_count()} cores, loopback")
    print(f"{'target':44} {'sent':>6} {'err':>5} {'rps':>6} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'max ms':>8}")
    for name, r in results.items():
        print(f"{name:44} {r['requests']:6d} {r['errors']:5d} {r['achieved_rps']:6.0f} "
              f"{r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['p99_ms']:8.2f} {r['max_ms']:8.1f}")


if __name__ == "__main__":
    main()
