"""Registry: the challenger alias follows new versions, the promotion gate, rollback, and an
alias history that records every move with from -> to, reason and actor."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _scoring_fixtures import make_features, make_scorer

from ml import registry
from ml.config import Settings, load_settings

WINDOW = {"test_window_start": "2026-09-01", "test_window_end": "2026-09-21"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the module (creating one costs seconds); tests stay independent by
    each registering its own model name."""
    return tmp_path_factory.mktemp("registry")


@pytest.fixture
def settings(store: Path, request: pytest.FixtureRequest) -> Settings:
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    return load_settings(overrides={"paths.data_dir": str(store), "registry.model_name": name})


def _register(
    settings: Settings, auc: float, tags: dict[str, str] | None = None, actor: str = "test"
) -> registry.ModelVersionInfo:
    scorer, frame = make_scorer()
    return registry.log_and_register(
        scorer,
        params={"max_depth": 3},
        metrics={"test_auc": auc},
        artifacts={},
        tags={**WINDOW, **(tags or {})},
        input_example=frame.drop(columns="lead_id").head(5),
        settings=settings,
        actor=actor,
    )


def _history(settings: Settings) -> pd.DataFrame:
    h = registry.alias_history(settings)
    return h[h["model_name"] == settings.registry.model_name].reset_index(drop=True)


def _moves(h: pd.DataFrame) -> list[tuple[int | None, int, str]]:
    return [
        (None if pd.isna(f) else int(f), int(t), a)
        for f, t, a in h[["from_version", "to_version", "action"]].values
    ]


def test_new_versions_take_the_challenger_alias(settings: Settings) -> None:
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    v1 = _register(settings, 0.80, tags={"git_commit": "abc"})
    # The fluent API's global URI (and the variable MLflow exports) is restored afterwards.
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before
    v2 = _register(settings, 0.81)
    assert (v1.version, v2.version) == (1, 2)
    assert registry.current_version(settings, "challenger") == 2
    assert registry.current_version(settings, "champion") is None
    assert _moves(_history(settings)) == [(None, 1, "challenger"), (1, 2, "challenger")]
    client = registry.mlflow_client(settings)
    assert client.get_model_version(settings.registry.model_name, "1").tags["git_commit"] == "abc"
    loaded, version = registry.load_version(settings, "challenger")
    scorer, _ = make_scorer()
    features = make_features(50, seed=9)
    assert version == 2
    np.testing.assert_allclose(loaded.predict_proba(features), scorer.predict_proba(features))


def test_gate_refuses_low_auc_and_promotes_first_passing_model(settings: Settings) -> None:
    _register(settings, 0.62)
    refused = registry.promote(settings, reason="nightly", actor="test")
    assert not refused.accepted
    assert "test_auc 0.6200 < min_auc 0.75 (registry.min_auc)" in refused.message
    assert registry.current_version(settings) is None
    _register(settings, 0.80)
    accepted = registry.promote(settings, reason="nightly", actor="test")
    assert accepted.accepted and accepted.version == 2 and accepted.previous_champion is None
    assert registry.current_version(settings) == 2
    champion, version = registry.load_champion(settings)
    assert version == 2 and champion.feature_names


def test_gate_compares_with_the_champion_within_tolerance(settings: Settings) -> None:
    _register(settings, 0.85)
    assert registry.promote(settings, reason="first", actor="test").accepted
    _register(settings, 0.84)  # worse by 0.01 > tolerance 0.005
    refused = registry.promote(settings, reason="weekly", actor="test")
    assert not refused.accepted
    assert "champion_tolerance 0.005" in refused.message and "v1" in refused.message
    assert "same test window 2026-09-01–2026-09-21" in refused.message
    _register(settings, 0.846)  # worse by 0.004: within tolerance
    accepted = registry.promote(settings, reason="weekly", actor="test")
    assert accepted.accepted and registry.current_version(settings) == 3


def test_gate_reevaluates_the_champion_on_the_challenger_window(settings: Settings) -> None:
    _register(settings, 0.80)
    registry.promote(settings, reason="first", actor="test")
    _register(
        settings, 0.82, tags={"test_window_start": "2026-10-01", "test_window_end": "2026-10-21"}
    )
    calls = []

    def evaluator(scorer, start, end):  # the champion does better on the newer window
        calls.append((start, end))
        return 0.90

    refused = registry.promote(settings, reason="weekly", actor="test", evaluator=evaluator)
    assert calls == [("2026-10-01", "2026-10-21")]
    assert not refused.accepted and refused.champion_auc == 0.90
    assert "re-evaluated" in refused.comparison
    # A window with one class cannot be re-scored: the stored metrics decide, and it says so.
    fallback = registry.promote(
        settings, reason="weekly", actor="test", evaluator=lambda scorer, start, end: float("nan")
    )
    assert fallback.accepted and fallback.champion_auc == 0.80
    assert "impossible" in fallback.comparison and "different test windows" in fallback.comparison
    _register(settings, 0.50)
    forced = registry.promote(settings, reason="hotfix", actor="test", force=True)
    assert forced.accepted and registry.current_version(settings) == 3


def test_rollback_restores_previous_champion_and_history_shows_every_move(
    settings: Settings,
) -> None:
    for auc in (0.80, 0.81, 0.82):
        _register(settings, auc)
        assert registry.promote(settings, reason=f"auc {auc}", actor="run-42").accepted
    assert registry.current_version(settings) == 3
    back = registry.rollback(settings, reason="bad calls from sales", actor="cli:rollback")
    assert back.accepted and (back.previous_champion, back.version) == (3, 2)
    assert registry.current_version(settings) == 2
    registry.rollback(settings, reason="still bad", actor="cli:rollback")
    assert registry.current_version(settings) == 1
    with pytest.raises(registry.RegistryError, match="no previous champion"):
        registry.rollback(settings, reason="again", actor="cli:rollback")
    h = _history(settings)
    champ = h[h["alias"] == "champion"]
    assert _moves(champ) == [
        (None, 1, "promote"),
        (1, 2, "promote"),
        (2, 3, "promote"),
        (3, 2, "rollback"),
        (2, 1, "rollback"),
    ]
    assert champ["reason"].iloc[3] == "bad calls from sales"
    assert champ["actor"].tolist() == ["run-42"] * 3 + ["cli:rollback"] * 2
    assert champ["reason"].iloc[0].startswith("auc 0.8 [")  # the gate's verdict is recorded
    assert (h["alias"] == "challenger").sum() == 3
    assert h["changed_at"].is_monotonic_increasing


def test_reproducibility_tags(settings: Settings) -> None:
    frame = make_features(100, seed=1).assign(
        snapshot_ts=pd.date_range("2026-08-03", periods=100, freq="D", tz="UTC")
    )
    tags = registry.reproducibility_tags(settings, frame, feature_service="lead_scoring v1: ...")
    assert tags["config_hash"] == settings.config_hash()
    assert tags["training_rows"] == "100"
    assert tags["training_snapshot_min"].startswith("2026-08-03")
    assert tags["git_commit"] and tags["dbt_manifest_hash"]
    assert {"version.xgboost", "version.mlflow", "version.pandas"} <= set(tags)
    changed = frame.copy()
    changed.loc[5, "company_size"] += 1
    other = registry.reproducibility_tags(settings, changed)
    assert other["training_fingerprint"] != tags["training_fingerprint"]
    assert all(isinstance(v, str) for v in tags.values())


def test_cli_promote_history_rollback(store: Path) -> None:
    from typer.testing import CliRunner

    from ml.cli import app

    settings = load_settings(overrides={"paths.data_dir": str(store)})  # default model name
    _register(settings, 0.80)
    runner = CliRunner()
    env = {"LEAD_SCORING_DATA_DIR": str(store)}
    result = runner.invoke(app, ["promote", "--reason", "from the CLI"], env=env)
    assert result.exit_code == 0, result.output
    assert "promoted v1" in result.output
    # The alert comes from the one door, whichever caller opened it.
    alerts = settings.alerting.channels.jsonl.path.read_text().splitlines()
    sent = [a for a in map(json.loads, alerts) if a["key"] == "promotion:lead_scoring:v1"]
    assert len(sent) == 1 and sent[0]["details"]["actor"] == "cli:promote"
    assert sent[0]["details"]["reason"] == "from the CLI"
    result = runner.invoke(app, ["rollback"], env=env)
    assert result.exit_code == 2 and "no previous champion" in result.output
    result = runner.invoke(app, ["history"], env=env)
    assert (
        result.exit_code == 0 and "from the CLI" in result.output and "cli:promote" in result.output
    )


# ---------------------------------------------------------------- every call on the configured URI


def _mlflow_global_state() -> tuple[str | None, ...]:
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return (
        os.environ.get("MLFLOW_TRACKING_URI"),
        os.environ.get("MLFLOW_REGISTRY_URI"),
        tracking_utils._tracking_uri,
        registry_utils._registry_uri,
    )


def test_register_load_promote_write_only_into_the_configured_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's global default store is ./mlflow.db (and ./mlruns/) of the working directory:
    a call that missed the configured URI would create them in this fresh cwd."""
    from ml.config import PROJECT_ROOT

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    root_before = {p.name for p in PROJECT_ROOT.iterdir()}
    state_before = _mlflow_global_state()
    settings = load_settings(
        overrides={"paths.data_dir": str(tmp_path / "store"), "registry.model_name": "uri_test"}
    )
    _register(settings, 0.80)
    first, _ = registry.load_version(settings, "challenger")
    assert registry.promote(settings, reason="uri test", actor="test").accepted
    _register(settings, 0.81)
    champion, version = registry.load_champion(settings)
    challenger, _ = registry.load_version(settings, 2)
    assert version == 1 and champion.feature_names == first.feature_names
    assert challenger.feature_names == first.feature_names
    assert sorted(p.name for p in cwd.iterdir()) == []  # no mlflow.db, no mlruns/
    leaked = {p.name for p in PROJECT_ROOT.iterdir()} - root_before
    assert not leaked & {"mlflow.db", "mlruns", "mlartifacts", "data"}, leaked
    assert _mlflow_global_state() == state_before
    # Everything landed in the configured store.
    assert (tmp_path / "store" / "mlflow" / "mlflow.db").is_file()
    assert any((tmp_path / "store" / "mlflow" / "artifacts").iterdir())


def test_fluent_block_restores_uris_set_by_someone_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's own MLFLOW_TRACKING_URI (or one a caller set) survives our fluent block."""
    outside = f"sqlite:///{tmp_path / 'theirs.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outside)
    settings = load_settings(overrides={"paths.data_dir": str(tmp_path / "store")}, env={})
    before = _mlflow_global_state()
    with registry.fluent_uris(settings):
        import mlflow

        assert mlflow.get_tracking_uri() == settings.paths.mlflow_tracking_uri
        assert mlflow.get_registry_uri() == settings.paths.mlflow_tracking_uri
    assert _mlflow_global_state() == before
    assert os.environ["MLFLOW_TRACKING_URI"] == outside


# ---------------------------------------------------------------- fail closed


def _break(db: Path, how: str) -> None:
    """A real outage of the SQLite store (root ignores chmod, so the file itself changes)."""
    import sqlite3

    if how == "garbage":
        db.write_bytes(b"this is not a database\n" * 200)
    elif how == "directory":
        db.unlink()
        db.mkdir()
    elif how == "missing":
        db.unlink()
    elif how == "tables_dropped":
        con = sqlite3.connect(db)
        tables = con.execute("select name from sqlite_master where type = 'table'").fetchall()
        for (table,) in tables:
            con.execute(f'drop table if exists "{table}"')
        con.commit()
        con.close()


def _fresh_process_answers(settings: Settings) -> list[str]:
    """What current_version and promote give in a new Python process: the value, or the name
    of the exception."""
    import subprocess
    import sys

    from ml.config import PROJECT_ROOT

    code = (
        "from ml.config import load_settings\n"
        "from ml import registry\n"
        f"s = load_settings(overrides={{'paths.data_dir': {str(settings.paths.data_dir)!r}}})\n"
        "for call in (lambda: registry.current_version(s),\n"
        "             lambda: registry.promote(s, reason='x', actor='test').accepted):\n"
        "    try:\n"
        "        print(call())\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@pytest.mark.parametrize("how", ["garbage", "directory", "missing", "tables_dropped"])
def test_registry_outage_raises_and_the_gate_never_promotes(tmp_path: Path, how: str) -> None:
    settings = load_settings(overrides={"paths.data_dir": str(tmp_path)})
    _register(settings, 0.80)
    assert registry.promote(settings, reason="first", actor="test").accepted
    _register(settings, 0.90)  # a clear winner, waiting as @challenger
    assert registry.current_version(settings) == 1  # the store works, and is read now
    db = tmp_path / "mlflow" / "mlflow.db"
    saved = tmp_path / "saved.db"
    shutil.copy2(db, saved)  # the intact store, put back at the end
    _break(db, how)
    uri = settings.paths.mlflow_tracking_uri
    for alias in ("champion", "challenger"):
        with pytest.raises(registry.RegistryError, match="MLflow registry") as raised:
            registry.current_version(settings, alias)
        assert uri in str(raised.value)
    with pytest.raises(registry.RegistryError, match="promotion refused, nothing moved"):
        registry.promote(settings, reason="nightly", actor="test")
    with pytest.raises(registry.RegistryError):
        registry.load_champion(settings)
    # A fresh process (no store MLflow cached before the outage) fails closed too.
    assert _fresh_process_answers(settings) == ["RegistryError", "RegistryError"]
    if how == "missing":
        assert not db.exists()  # a reader does not plant an empty registry in its place
    # The store back as it was: the champion never moved and the history shows no promotion.
    if db.is_dir():
        db.rmdir()
    db.unlink(missing_ok=True)
    shutil.copy2(saved, db)
    assert registry.current_version(settings) == 1
    moves = registry.alias_history(settings)
    assert moves[moves["alias"] == "champion"]["to_version"].tolist() == [1]


def test_absent_alias_or_model_is_none_not_an_error(settings: Settings) -> None:
    _register(settings, 0.80)
    assert registry.current_version(settings, "champion") is None  # alias never set
    other = load_settings(
        overrides={"paths.data_dir": str(settings.paths.data_dir), "registry.model_name": "nope"}
    )
    assert registry.current_version(other) is None  # model never registered


def test_errors_name_the_registry_without_credentials() -> None:
    uri = "postgresql://scorer:s3cret-pw@db.internal:5432/mlflow"
    assert registry.safe_uri(uri) == "postgresql://***@db.internal:5432/mlflow"
    assert registry.safe_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    settings = load_settings(overrides={"paths.mlflow_tracking_uri": uri})
    from ml.registry.client import registry_errors

    with pytest.raises(registry.RegistryError) as raised, registry_errors(settings, "testing"):
        raise OSError(f"could not connect to {uri}")
    assert "s3cret" not in str(raised.value) and "db.internal:5432" in str(raised.value)


# ---------------------------------------------------------------- the gate on backtest folds


def _input(version: int, folds: dict[str, float], **kw) -> registry.GateInput:
    return registry.GateInput(version, fold_aucs=folds, **kw)


def test_compare_uses_only_the_common_folds(settings: Settings) -> None:
    # Over all its folds the champion averages 0.80 and the candidate 0.83, but the champion's
    # only weak fold is one the candidate was not evaluated on: on the common folds the champion
    # is better by 0.02 (> tolerance 0.005), so the candidate is refused.
    champion = _input(1, {"2026-08-03": 0.71, "2026-08-10": 0.83, "2026-08-17": 0.86})
    candidate = _input(
        2, {"2026-08-10": 0.82, "2026-08-17": 0.83, "2026-08-24": 0.84}, mean_auc=0.83
    )
    verdict = registry.compare(candidate, champion, settings)
    assert not verdict.accepted and verdict.basis == "folds"
    assert verdict.folds == ("2026-08-10", "2026-08-17")
    assert verdict.candidate_auc == pytest.approx(0.825)
    assert verdict.champion_auc == pytest.approx(0.845)
    for text in ("0.8250", "0.8450", "2026-08-10, 2026-08-17", "champion_tolerance 0.005"):
        assert text in verdict.message
    # Within the tolerance on the same folds: accepted, and the message says so.
    close = _input(2, {"2026-08-10": 0.826, "2026-08-17": 0.855}, mean_auc=0.84)
    ok = registry.compare(close, champion, settings)
    assert ok.accepted and "2 common folds" in ok.message and "0.8405" in ok.message


def test_compare_min_auc_first_champion_and_no_common_fold(settings: Settings) -> None:
    low = _input(3, {"2026-08-10": 0.74, "2026-08-17": 0.745})
    refused = registry.compare(low, None, settings)
    assert not refused.accepted and "< min_auc 0.75 (registry.min_auc)" in refused.message
    first = registry.compare(_input(3, {"2026-08-10": 0.8}), None, settings)
    assert first.accepted and "first champion" in first.message
    apart = registry.compare(
        _input(4, {"2026-09-07": 0.9}), _input(3, {"2026-08-10": 0.8}), settings
    )
    assert not apart.accepted and "share no backtest fold" in apart.message


def test_compare_falls_back_to_test_auc_without_folds(settings: Settings) -> None:
    window = ("2026-09-01", "2026-09-21")
    old_champion = registry.GateInput(1, test_auc=0.85, test_window=window)
    candidate = _input(2, {"2026-08-10": 0.9}, test_auc=0.84, test_window=window)
    verdict = registry.compare(candidate, old_champion, settings)
    assert verdict.basis == "test_auc" and not verdict.accepted
    assert "same test window 2026-09-01–2026-09-21" in verdict.message


def _register_folds(
    settings: Settings,
    folds: dict[str, float],
    test_auc: float = 0.8,
    tags: dict[str, str] | None = None,
) -> registry.ModelVersionInfo:
    tag = registry.fold_aucs_tag([{"origin": k, "auc": v, "pr_auc": 0.3} for k, v in folds.items()])
    scorer, frame = make_scorer()
    return registry.log_and_register(
        scorer,
        params={},
        metrics={"test_auc": test_auc, "backtest_auc_mean": float(np.mean(list(folds.values())))},
        artifacts={},
        tags={**WINDOW, **tag, **(tags or {})},
        input_example=frame.drop(columns="lead_id").head(5),
        settings=settings,
    )


def test_fold_aucs_tag() -> None:
    tag = registry.fold_aucs_tag(
        [{"origin": "2026-08-17", "auc": 0.8}, {"origin": pd.Timestamp("2026-08-10"), "auc": 0.7}]
    )
    assert tag == {"backtest.fold_aucs": '{"2026-08-10": 0.7, "2026-08-17": 0.8}'}
    assert registry.parse_fold_aucs(tag["backtest.fold_aucs"]) == {
        "2026-08-10": 0.7,
        "2026-08-17": 0.8,
    }
    with pytest.raises(ValueError, match="no finite auc"):
        registry.fold_aucs_tag([{"origin": "2026-08-10", "auc": float("nan")}])
    with pytest.raises(ValueError, match="appears twice"):
        registry.fold_aucs_tag([{"origin": "2026-08-10", "auc": 0.7}] * 2)


def test_promote_compares_stored_folds_and_the_evaluator_wins(settings: Settings) -> None:
    _register_folds(settings, {"2026-08-03": 0.80, "2026-08-10": 0.80, "2026-08-17": 0.80})
    assert registry.promote(settings, reason="first", actor="test").accepted
    _register_folds(settings, {"2026-08-10": 0.81, "2026-08-17": 0.81, "2026-08-24": 0.60})
    calls = []

    def evaluator(version: int) -> dict[str, float]:  # the champion re-scored: better
        calls.append(version)
        return {"2026-08-10": 0.86, "2026-08-17": 0.86, "2026-08-24": 0.86}

    # min_auc is checked on the candidate's own backtest mean (0.74 here): refused first.
    low = registry.promote(settings, reason="weekly", actor="test", evaluator=evaluator)
    assert not low.accepted and "min_auc" in low.message
    _register_folds(settings, {"2026-08-10": 0.81, "2026-08-17": 0.81, "2026-08-24": 0.81})
    refused = registry.promote(settings, reason="weekly", actor="test", evaluator=evaluator)
    assert calls == [1, 1] and not refused.accepted
    assert refused.basis == "folds" and refused.champion_auc == pytest.approx(0.86)
    assert "re-scored on the candidate's folds" in refused.message
    accepted = registry.promote(settings, reason="weekly", actor="test")  # stored folds: 0.80
    assert accepted.accepted and accepted.folds == ("2026-08-10", "2026-08-17")
    assert registry.current_version(settings) == 3


def test_promotions_and_rollbacks_send_one_alert_with_the_recorded_reason(
    settings: Settings,
) -> None:
    _register(settings, 0.80)
    decision = registry.promote(settings, reason="nightly", actor="test")
    _register(settings, 0.81)
    registry.promote(settings, reason="weekly", actor="test")
    registry.rollback(settings, reason="bad calls", actor="test")
    path = settings.alerting.channels.jsonl.path
    alerts = [json.loads(line) for line in path.read_text().splitlines()]
    name = settings.registry.model_name
    mine = [a for a in alerts if a["key"].startswith(f"promotion:{name}:")]
    assert [a["key"] for a in mine] == [
        f"promotion:{name}:v1",
        f"promotion:{name}:v2",
        f"promotion:{name}:rollback:v2->v1",
    ]
    assert mine[0]["summary"] == decision.message
    h = _history(settings)
    recorded = h[h["alias"] == "champion"]["reason"].tolist()
    assert recorded[0] == f"nightly [{decision.comparison}]"
    assert mine[0]["details"]["reason"] == "nightly"


def test_alias_history_url_is_a_setting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'history.db'}"
    settings = load_settings(
        overrides={"paths.data_dir": str(tmp_path / "store")},
        env={"LEAD_SCORING_ALIAS_HISTORY_URL": url},
    )
    assert registry.alias_history_url(settings) == url
    _register(settings, 0.8)
    assert (tmp_path / "elsewhere" / "history.db").is_file()
    assert not (tmp_path / "store" / "mlflow" / "alias_history.db").exists()
    assert registry.alias_history(settings)["to_version"].tolist() == [1]
    default = load_settings(overrides={"paths.data_dir": str(tmp_path / "d")}, env={})
    assert default.registry.alias_history_url == (
        f"sqlite:///{tmp_path / 'd' / 'mlflow' / 'alias_history.db'}"
    )


def test_the_service_keeps_its_model_when_the_registry_fails(tmp_path: Path) -> None:
    """The registry side of the service's outage behaviour: its alias poll (the default
    ml.registry lookup and loader) sees an error, not "no champion", so it keeps the model."""
    from ml.serving.model_manager import ModelManager

    settings = load_settings(overrides={"paths.data_dir": str(tmp_path)})
    _register(settings, 0.80)
    registry.promote(settings, reason="first", actor="test")
    manager = ModelManager(settings)
    state = manager.refresh()
    assert state.champion is not None and state.champion.version == 1
    db = tmp_path / "mlflow" / "mlflow.db"
    db.rename(tmp_path / "moved.db")
    db.write_bytes(b"not a database" * 100)
    state = manager.refresh()
    assert state.champion is not None and state.champion.version == 1
    # the service's own words (no path or exception text in what clients see)
    assert state.degraded and state.failed_polls >= 1 and "mlflow.db" not in state.last_error


def test_without_common_folds_the_champions_family_on_the_candidates_folds_decides(
    settings: Settings,
) -> None:
    _register_folds(settings, {"2026-06-01": 0.84, "2026-06-08": 0.84}, tags={"family": "logistic"})
    assert registry.promote(settings, reason="first", actor="test").accepted
    later = {"2026-09-07": 0.80, "2026-09-14": 0.80}
    logistic_there = json.dumps({"2026-09-07": 0.85, "2026-09-14": 0.86})
    _register_folds(
        settings,
        later,
        tags={"family": "xgboost", "backtest.fold_aucs.logistic": logistic_there},
    )
    refused = registry.promote(settings, reason="weekly", actor="test")
    assert not refused.accepted and refused.champion_auc == pytest.approx(0.855)
    assert "its family (logistic) as refit on the candidate's folds" in refused.message
    assert refused.folds == ("2026-09-07", "2026-09-14")
    _register_folds(settings, later, tags={"family": "xgboost"})  # no logistic figures logged
    apart = registry.promote(settings, reason="weekly", actor="test")
    assert not apart.accepted and "share no backtest fold" in apart.message
    assert registry.current_version(settings) == 1
