"""Registry: the challenger alias follows new versions, the promotion gate, rollback, and an
alias history that records every move with from -> to, reason and actor."""

from __future__ import annotations

import os
import re
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
        settings, reason="weekly", actor="test", evaluator=lambda *_: float("nan")
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
    result = runner.invoke(app, ["rollback"], env=env)
    assert result.exit_code == 2 and "no previous champion" in result.output
    result = runner.invoke(app, ["history"], env=env)
    assert (
        result.exit_code == 0 and "from the CLI" in result.output and "cli:promote" in result.output
    )
