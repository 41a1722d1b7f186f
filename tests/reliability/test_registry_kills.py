"""kill -9 inside a promotion and a rollback: after the kill @champion is the old or the new
version and loadable, the alias history agrees with it once the next registry command ran,
and promote / rollback keep working (nothing recorded twice, no move lost)."""

from __future__ import annotations

import pytest
from _kill import kill_at
from _models import linear_scorer
from _scoring_fixtures import make_features
from mlflow import MlflowClient

from ml import registry
from ml.config import Settings, load_settings
from ml.registry import alias_history, alias_stack


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = load_settings(overrides={"paths.data_dir": str(tmp_path_factory.mktemp("kills"))})
    example = make_features(5)[linear_scorer().feature_names]
    for _ in range(2):
        registry.log_and_register(linear_scorer(), params={}, metrics={"test_auc": 0.8},
                                  artifacts={}, tags={}, input_example=example, settings=s,
                                  actor="test")
    registry.promote(s, version=1, reason="first", actor="test", force=True)
    return s


def champions(settings: Settings) -> list[int]:
    return alias_stack(alias_history(settings), settings.registry.model_name, "champion")


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_9_around_the_alias_move_keeps_alias_and_history_one_story(settings, when) -> None:
    assert registry.current_version(settings, "champion") == 1
    kill_at(lambda: registry.promote(settings, version=2, reason="kill", actor="test",
                                     force=True),
            MlflowClient, "set_registered_model_alias", when)
    champion = registry.current_version(settings, "champion")
    assert champion == (1 if when == "before" else 2)
    registry.load_version(settings, champion)  # readable and whole
    # The next command records a move MLflow made but the history missed, then works.
    decision = registry.promote(settings, version=2, reason="again", actor="test", force=True)
    assert registry.current_version(settings, "champion") == 2
    assert champions(settings)[-2:] == [1, 2] and decision.version == 2
    kill_at(lambda: registry.rollback(settings, reason="kill", actor="test"),
            MlflowClient, "set_registered_model_alias", when)
    registry.rollback(settings, reason="again", actor="test") if when == "before" else None
    assert registry.current_version(settings, "champion") == 1
    registry.promote(settings, version=1, reason="noop", actor="test", force=True)  # reconciles
    assert champions(settings)[-1] == 1
    history = alias_history(settings)
    moves = history[history["alias"] == "champion"]
    assert moves["to_version"].tolist()[-1] == 1
    assert not moves.duplicated(["changed_at"]).any()


def test_re_running_a_promotion_that_completed_succeeds(settings, monkeypatch) -> None:
    """A promotion killed after its move is re-run by the nightly job: the version is already
    @champion, which is the state asked for (exit 0, nothing recorded)."""
    from typer.testing import CliRunner

    from ml.cli import app

    monkeypatch.setenv("LEAD_SCORING_DATA_DIR", str(settings.paths.data_dir))
    champion = registry.current_version(settings, "champion")
    moves = len(alias_history(settings))
    result = CliRunner().invoke(app, ["promote", "--version", str(champion), "--force"])
    assert result.exit_code == 0, result.output
    assert "already @champion" in result.output and len(alias_history(settings)) == moves
