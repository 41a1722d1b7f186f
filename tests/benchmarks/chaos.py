"""Chaos run: kill -9 every step of the nightly pipeline at random moments, then re-run it.

For each step (landing, dbt build + mart export, Feast apply, online refresh, training with
registration, promotion, batch scoring with its extract, monitoring with its report files) the
script:

1. runs the step once to completion through the `lead-scoring` CLI and records a fingerprint of
   what it owns (row counts and checksums of its outputs: raw files, marts, Feast registry,
   online store, registry aliases and versions, CRM tables and extract, monitoring store and
   report files);
2. `--kills` times: starts the step again, sends SIGKILL to its process group at a random
   moment (even rounds: anywhere in the measured duration; odd rounds: in its second half,
   past the CLI's imports), then checks the invariants: every store the step owns is still
   readable and equals the last good fingerprint (the inputs did not change, so a complete
   re-run yields the same outputs: anything else is a torn, duplicated or lost write);
3. re-runs the step to completion and checks the fingerprint again (the re-run completes and
   nothing was duplicated or lost).

Promotion is different, since promoting the champion again moves nothing: a copy of the
champion is registered once as a second version, and every round moves @champion to the other
version (`promote --version V --force`), killed, then re-run. After the kill @champion is the old
or the new version and loads (hash checked); after the re-run it is the new one and the alias
history holds exactly one more champion move, to it.

It prints one row per step: kills, kills that landed while the step was running, invariant
failures after the kills, re-runs completed, re-run failures. Goal: 0 failures.

    .venv/bin/python tests/benchmarks/chaos.py                  # every step, 5 kills each
    .venv/bin/python tests/benchmarks/chaos.py --data-dir /tmp/chaos --steps score --kills 10

`--steps` runs only the named steps: the earlier steps' outputs must already be in --data-dir
(from a previous run of the script on that folder).

The data is the test suite's generated dataset (6,000 leads over 330 days) in a temporary
folder; the registry, CRM and stores are the embedded defaults. Commit your work first: a
dirty tree never reuses a trained version, so training re-runs would register copies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline_data import TEST_GENERATOR  # noqa: E402

from ml.config import Settings, load_settings  # noqa: E402

SCORE_DATE = "2026-11-02"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def frame_checksum(frame: pd.DataFrame, ignore: tuple[str, ...] = ()) -> tuple[int, str]:
    """(rows, order-independent checksum of the values) of a frame."""
    frame = frame.drop(columns=[c for c in ignore if c in frame.columns])
    if frame.empty:
        return 0, "empty"
    hashed = pd.util.hash_pandas_object(frame.astype(str), index=False)
    return len(frame), _sha(str(int(hashed.sum()) & (2**64 - 1)).encode())


# ----------------------------------------------------------------------------- fingerprints
# Each reads only (read-only opens), raises if a store is unreadable, and leaves out what
# legitimately changes between two complete runs on the same inputs (timestamps, run ids).

def fp_raw(s: Settings) -> dict[str, Any]:
    return {p.name: (len(pd.read_csv(p)), _sha(p.read_bytes()))
            for p in sorted(s.paths.raw_dir.glob("*.csv"))}


def fp_marts(s: Settings) -> dict[str, Any]:
    return {str(p.relative_to(s.paths.marts_dir)): frame_checksum(pd.read_parquet(p))
            for p in sorted(s.paths.marts_dir.rglob("*.parquet"))}


def fp_feast(s: Settings) -> dict[str, Any]:
    from ml.feature_store import get_store

    store = get_store(s)
    return {"views": sorted(v.name for v in store.list_feature_views()),
            "services": sorted(f.name for f in store.list_feature_services()),
            "entities": sorted(e.name for e in store.list_entities())}


def fp_online(s: Settings) -> dict[str, Any]:
    from ml.feature_store import ONLINE_STORE_FILE

    path = s.paths.feast_dir / ONLINE_STORE_FILE
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in con.execute(
            "select name from sqlite_master where type = 'table' order by name")
            if "entity_key" in {c[1] for c in con.execute(f'pragma table_info("{t}")')}]
        out = {}
        for t in tables:
            frame = pd.read_sql(f'select entity_key, feature_name, value from "{t}"', con)
            frame["value"] = frame["value"].map(bytes.hex)
            frame["entity_key"] = frame["entity_key"].map(bytes.hex)
            out[t] = frame_checksum(frame)
        return out
    finally:
        con.close()


def fp_registry(s: Settings) -> dict[str, Any]:
    from ml import registry

    client = registry.mlflow_client(s, create=False)
    name = s.registry.model_name
    versions = client.search_model_versions(f"name = '{name}'")
    champion = registry.current_version(s, "champion")
    # A version is a duplicate when another has the same identity (code, settings, data):
    # training reuses such a version instead of registering a copy. A new commit is a new
    # identity, so versions are counted per identity, not in total.
    identities = [tuple(v.tags.get(k) for k in registry.IDENTITY_TAGS) for v in versions]
    out = {"duplicate versions": len(identities) - len(set(identities)), "champion": champion,
           "challenger is latest": registry.current_version(s, "challenger") == max(
               (int(v.version) for v in versions), default=None)}
    if champion is not None:
        registry.load_version(s, champion)  # loadable, hash checked
    challenger = registry.current_version(s, "challenger")
    if challenger is not None:
        registry.load_version(s, challenger)
    history = registry.alias_history(s)
    moves = history[(history["model_name"] == name) & (history["alias"] == "champion")]
    out["history_matches_alias"] = bool(
        champion is None or (len(moves) and int(moves.iloc[-1]["to_version"]) == champion))
    return out


def fp_crm(s: Settings) -> dict[str, Any]:
    from ml import crm
    from ml.scoring import extract_path

    engine = crm.crm_engine(s, read_only=True)
    try:
        current = crm.read_current_scores(engine)
        history = crm.read_history(engine)
    finally:
        engine.dispose()
    ignore = ("scored_at", "run_id")
    out: dict[str, Any] = {"lead_scores": frame_checksum(current, ignore),
                           "history": frame_checksum(history, ignore),
                           "duplicates": int(history.duplicated(["scoring_date", "lead_id"]).sum())}
    for day, rows in history.groupby(history["scoring_date"].astype(str)):
        path = extract_path(s, pd.Timestamp(day).date())
        extract = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
        out[f"extract {day} is its run"] = bool(
            len(extract) == len(rows) and set(extract.get("run_id", [])) == set(rows["run_id"]))
    return out


def fp_monitoring(s: Settings) -> dict[str, Any]:
    from ml.monitoring.store import read_metrics

    metrics = read_metrics(s)
    keys = ["run_date", "scope", "feature", "cohort", "metric"]
    out: dict[str, Any] = {"rows": frame_checksum(metrics, ("run_id", "recorded_at")),
                           "duplicates": int(metrics.duplicated(keys).sum()),
                           "scopes per run": sorted({(r, tuple(sorted(g["scope"].unique())))
                                                     for r, g in metrics.groupby("run_id")})}
    # Report files: the set of each date's files, each whole (a page that ends, a JSON that
    # parses); Evidently embeds ids, so the bytes differ between two complete runs. The JSON's
    # metric values do not: their checksum is compared. Temporary files (a dot) are ignored.
    for path in sorted((s.paths.reports_dir / "monitoring").rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        name = str(path.relative_to(s.paths.reports_dir))
        if path.suffix == ".html":
            out[name] = "whole" if path.read_text().rstrip().endswith("</html>") else "torn"
        elif path.suffix == ".json":
            values = [m.get("value") for m in json.loads(path.read_text()).get("metrics", [])]
            out[name] = _sha(json.dumps(values, sort_keys=True, default=str).encode())
    return out


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    fingerprint: Callable[[Settings], dict[str, Any]]


def steps(export: Path) -> list[Step]:
    return [
        Step("landing", ["land", "--mapping", "hubspot", str(export)], fp_raw),
        Step("dbt build + export", ["build"], fp_marts),
        Step("feast apply", ["features", "apply"], fp_feast),
        Step("online refresh", ["features", "refresh"], fp_online),
        Step("training + registration", ["train"], fp_registry),
        Step("promotion", [], fp_registry),  # promotion_rounds: a real move every round
        Step("scoring (CRM + extract)", ["score", "--date", SCORE_DATE], fp_crm),
        Step("monitoring", ["monitor", "--date", SCORE_DATE, "--no-alerts"], fp_monitoring),
    ]


def run(argv: list[str], env: dict[str, str], kill_after: float | None = None
        ) -> tuple[float, bool, str]:
    """(seconds, killed while running, stderr tail) of `lead-scoring ARGV`."""
    started = time.monotonic()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("lead-scoring")), *argv],
                            env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            return time.monotonic() - started, True, ""
    err = proc.communicate()[1].decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"lead-scoring {' '.join(argv)} failed:\n{err[-3000:]}")
    return time.monotonic() - started, False, err[-500:]


def kill_delay(rng: random.Random, k: int, seconds: float) -> float:
    """When to kill round k: uniform over the measured run for even rounds, over its second
    half for odd ones (a CLI spends its first seconds importing, before it touches a store)."""
    low, high = (0.05, 0.95) if k % 2 == 0 else (0.5, 0.98)
    return rng.uniform(low, high) * seconds


def champion_moves(s: Settings) -> pd.DataFrame:
    from ml import registry

    history = registry.alias_history(s)
    return history[(history["model_name"] == s.registry.model_name)
                   & (history["alias"] == "champion")]


def second_version(s: Settings) -> None:
    """Register a copy of the champion as a second version (once), so that every promotion
    round really moves @champion between two versions (a promote of the champion is a no-op)."""
    from ml import registry

    client = registry.mlflow_client(s, create=False)
    if len(client.search_model_versions(f"name = '{s.registry.model_name}'")) >= 2:
        return
    scorer, version = registry.load_version(s, "champion")
    example = pd.read_parquet(s.paths.marts_dir / "lead_features_latest.parquet").head(5)
    registry.log_and_register(scorer, params={}, metrics={}, artifacts={},
                              tags={"chaos_copy_of": str(version)},
                              input_example=example[scorer.feature_names], settings=s,
                              actor="chaos")


def promotion_rounds(s: Settings, env: dict[str, str], rng: random.Random, kills: int
                     ) -> tuple[float, int, int, int, list[str]]:
    """Each round moves @champion to the other version: `promote --version V --force`, killed at
    a random moment, then run to completion. After the kill @champion is the old or the new
    version and loadable; after the re-run it is the new one and the alias history holds
    exactly one more champion move, to it (none lost, none recorded twice)."""
    from ml import registry

    if registry.current_version(s, "champion") is None:  # training registers @challenger only
        run(["promote", "--force", "--reason", "chaos: first champion"], env)
    second_version(s)
    client = registry.mlflow_client(s, create=False)
    versions = sorted(int(v.version) for v in client.search_model_versions(
        f"name = '{s.registry.model_name}'"))[-2:]

    def command(target: int, k: int) -> list[str]:
        return ["promote", "--version", str(target), "--force", "--reason", f"chaos {k}"]

    champion = registry.current_version(s, "champion")
    target = versions[0] if champion == versions[1] else versions[1]
    seconds, _, _ = run(command(target, -1), env)  # a timed complete move
    landed = failures = rerun_failures = 0
    notes: list[str] = []
    for k in range(kills):
        before, moves = registry.current_version(s, "champion"), len(champion_moves(s))
        target = versions[0] if before == versions[1] else versions[1]
        delay = kill_delay(rng, k, seconds)
        _, killed, _ = run(command(target, k), env, kill_after=delay)
        landed += int(killed)
        try:
            now = registry.current_version(s, "champion")
            registry.load_version(s, now)
            if now not in (before, target):
                failures += 1
                notes.append(f"kill {k} at {delay:.1f}s: @champion v{now}, not v{before} or "
                             f"v{target}")
        except Exception as exc:
            failures += 1
            notes.append(f"kill {k} at {delay:.1f}s: unreadable: {exc!s:.200}")
        try:
            run(command(target, k), env)
            history = champion_moves(s)
            now = registry.current_version(s, "champion")
            if now != target or len(history) != moves + 1 or int(
                    history.iloc[-1]["to_version"]) != target:
                rerun_failures += 1
                notes.append(f"re-run after kill {k}: @champion v{now} (want v{target}), "
                             f"{len(history) - moves} champion moves recorded (want 1)")
        except Exception as exc:
            rerun_failures += 1
            notes.append(f"re-run after kill {k} failed: {exc!s:.300}")
    return seconds, landed, failures, rerun_failures, notes


def kill_rounds(step: Step, s: Settings, env: dict[str, str], rng: random.Random, kills: int
                ) -> tuple[float, int, int, int, list[str]]:
    """Complete run (the last good state), then `kills` x (killed run, invariants, re-run).
    Returns the first complete run's seconds, kills that landed while running, invariant
    failures, re-run failures and notes."""
    first, _, _ = run(step.argv, env)
    seconds = first
    good = step.fingerprint(s)
    landed = failures = rerun_failures = 0
    notes: list[str] = []
    for k in range(kills):
        delay = kill_delay(rng, k, seconds)
        _, killed, _ = run(step.argv, env, kill_after=delay)
        landed += int(killed)
        try:
            after = step.fingerprint(s)
            if after != good:
                failures += 1
                notes.append(f"kill {k} at {delay:.1f}s: {diff(good, after)}")
        except Exception as exc:  # unreadable store: an invariant failure
            failures += 1
            notes.append(f"kill {k} at {delay:.1f}s: unreadable: {exc!s:.200}")
        try:
            # the next kill is timed on this run: a first run can be slower (cold caches, a
            # store created), and kills timed on it would land after later runs ended
            seconds, _, _ = run(step.argv, env)
            again = step.fingerprint(s)
            if again != good:
                rerun_failures += 1
                notes.append(f"re-run after kill {k}: {diff(good, again)}")
        except Exception as exc:
            rerun_failures += 1
            notes.append(f"re-run after kill {k} failed: {exc!s:.300}")
    return first, landed, failures, rerun_failures, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kills per step")
    parser.add_argument("--steps", default="", help="comma-separated step names (prefixes)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="reuse a folder (default: a new temporary one)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LEAD_SCORING_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    settings = load_settings(overrides={"paths.data_dir": str(data), **TEST_GENERATOR})
    config = data / "chaos_config.yaml"
    if not config.exists():
        import yaml

        tree = yaml.safe_load((ROOT / "config" / "training_config.yaml").read_text())
        tree["generator"].update({k.split(".", 1)[1]: v for k, v in TEST_GENERATOR.items()})
        config.write_text(yaml.safe_dump(tree, sort_keys=False))
    env["LEAD_SCORING_CONFIG"] = str(config)
    export = data / "export"
    if not export.exists():
        print(f"preparing a HubSpot sample export in {export} ...", flush=True)
        run(["land", "--mapping", "hubspot", "--sample", str(export)], env)

    wanted = [w.strip() for w in args.steps.split(",") if w.strip()]
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows = []
    for step in steps(export):
        if wanted and not any(step.name.startswith(w) for w in wanted):
            continue  # its outputs must exist already (a --data-dir of an earlier run)
        if step.name == "promotion":
            result = promotion_rounds(settings, env, rng, args.kills)
        else:
            result = kill_rounds(step, settings, env, rng, args.kills)
        seconds, landed, failures, rerun_failures, notes = result
        rows.append({"step": step.name, "seconds": round(seconds, 1), "kills": args.kills,
                     "while running": landed, "invariant failures": failures,
                     "re-runs completed": f"{args.kills - rerun_failures}/{args.kills}",
                     "re-run failures": rerun_failures})
        print(json.dumps(rows[-1]), flush=True)
        for note in notes:
            print("   ", note, flush=True)
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(f"\nload average at the end: {os.getloadavg()}; data in {data}")


def diff(good: dict[str, Any], other: dict[str, Any]) -> str:
    keys = sorted(set(good) | set(other))
    return "; ".join(f"{k}: {good.get(k)} -> {other.get(k)}" for k in keys
                     if good.get(k) != other.get(k))[:400]


if __name__ == "__main__":
    main()
