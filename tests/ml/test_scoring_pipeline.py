"""The nightly pipeline of batch_score: leads scored, written and extracted chunk by chunk in
threads give exactly what scoring them all at once gives; a failure in any chunk rolls the whole
run back; the CRM writer refuses chunks out of lead order."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _scoring_fixtures import SCORED_AT, awkward_features, make_scorer, make_scores

from ml import crm, fast_trees, scoring
from ml.config import Settings, load_settings

COLUMNS = ["lead_id", "score", "tier", "probability", "reasons_for", "reasons_against"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(overrides={"paths.data_dir": str(tmp_path)})


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    # 327 leads: 7 chunks of 40, one of 7, then the last 40 in 4 of 10 (below reasons'
    # small-input size, 64, as well)
    monkeypatch.setattr(scoring, "PIPELINE_ROWS", 40)
    monkeypatch.setattr(scoring, "PIPELINE_TAIL_ROWS", 10)
    return 40


@pytest.mark.parametrize("n", [0, 1, 39, 40, 41, 100, 327])
def test_chunks_cover_every_lead_once_the_last_ones_small(small_chunks, n) -> None:
    bounds = scoring._chunk_bounds(n)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(hi == lo for (_, hi), (lo, _) in zip(bounds, bounds[1:], strict=False))
    assert all(0 < hi - lo <= 40 for lo, hi in bounds) or n == 0
    assert all(hi - lo <= 10 for lo, hi in bounds if hi > n - 40)  # the run's tail


def _shuffled(n: int, seed: int) -> pd.DataFrame:
    frame = awkward_features(n, seed)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_chunked_run_writes_exactly_the_one_pass_scores(
    settings, small_chunks, monkeypatch
) -> None:
    scorer, _ = make_scorer()
    features = _shuffled(327, seed=5)  # not in lead order: the pipeline sorts
    want = scoring.score_frame(scorer, features, settings).sort_values("lead_id")  # XGBoost
    want = want.reset_index(drop=True)
    if fast_trees.available():  # the chunks through the compiled walker, in the scoring thread
        monkeypatch.setattr(scoring, "COMPILED_MIN_ROWS", 0)

    summary = scoring.batch_score(settings, features, scorer, "1", SCORED_AT, run_id="night-1")

    engine = crm.crm_engine(settings, read_only=True)
    history = crm.read_history(engine, SCORED_AT.date())
    pd.testing.assert_frame_equal(history[COLUMNS], want[COLUMNS], check_exact=True)
    assert history["score_change"].isna().all()
    extract = pd.read_parquet(scoring.extract_path(settings, SCORED_AT.date()))
    pd.testing.assert_frame_equal(extract[COLUMNS], want[COLUMNS], check_exact=True)
    assert set(extract["run_id"]) == {"night-1"} and extract["score_change"].isna().all()
    assert summary.rows == 327 and summary.new_leads == 327
    tiers = want["tier"].value_counts().reindex(list("ABCD"), fill_value=0)
    assert summary.tiers == tiers.to_dict()

    # next night: changes against the previous run, chunk by chunk; new leads have none
    later = _shuffled(340, seed=6)
    second = scoring.batch_score(
        settings, later, scorer, "1", SCORED_AT + timedelta(days=1), run_id="night-2"
    )
    now = crm.read_history(engine, (SCORED_AT + timedelta(days=1)).date()).set_index("lead_id")
    before = history.set_index("lead_id")["score"].reindex(now.index)
    np.testing.assert_array_equal(
        now["score_change"].to_numpy(), np.round(now["score"] - before, 1).to_numpy()
    )
    assert second.new_leads == int(before.isna().sum()) == 13


def test_chunked_csv_extract_equals_the_history(tmp_path, small_chunks) -> None:
    settings = load_settings(overrides={"paths.data_dir": str(tmp_path),
                                        "scoring.extract_format": "csv"})
    scorer, _ = make_scorer()
    scoring.batch_score(settings, _shuffled(101, seed=7), scorer, "1", SCORED_AT, run_id="r")
    extract = pd.read_csv(scoring.extract_path(settings, SCORED_AT.date()))
    history = crm.read_history(crm.crm_engine(settings, read_only=True), SCORED_AT.date())
    assert extract["lead_id"].tolist() == history["lead_id"].tolist()  # one header, every row
    assert extract["reasons_for"].tolist() == history["reasons_for"].tolist()


def test_a_failing_chunk_rolls_the_whole_run_back(settings, small_chunks, monkeypatch) -> None:
    scorer, _ = make_scorer()
    scoring.batch_score(settings, _shuffled(200, seed=8), scorer, "1", SCORED_AT, run_id="ok")
    engine = crm.crm_engine(settings, read_only=True)
    before = crm.read_current_scores(engine)

    real, calls = scoring._score, []

    def fails_on_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # three chunks are already in the transaction
            raise RuntimeError("scorer broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_score", fails_on_the_fourth)
    with pytest.raises(RuntimeError, match="scorer broke"):
        scoring.batch_score(
            settings, _shuffled(200, seed=9), scorer, "1", SCORED_AT + timedelta(days=1), "bad"
        )
    pd.testing.assert_frame_equal(crm.read_current_scores(engine), before)
    assert crm.read_runs(engine)["status"].tolist() == ["succeeded", "failed"]
    assert not scoring.extract_path(settings, (SCORED_AT + timedelta(days=1)).date()).exists()
    assert not (scoring.extract_path(settings, SCORED_AT.date()).parent / ".pending").exists()


def test_chunks_out_of_lead_order_are_refused_and_nothing_is_written(settings) -> None:
    engine = crm.crm_engine(settings)
    scores = make_scores(90, seed=1).sort_values("lead_id").reset_index(drop=True)
    kwargs = {"model_name": "m", "model_version": "1", "scored_at": SCORED_AT, "run_id": "r"}
    assert crm.write_scores(engine, [scores.iloc[:50], scores.iloc[50:]], SCORED_AT.date(),
                            **kwargs) == 90
    for chunks in ([scores.iloc[50:], scores.iloc[:50]],  # chunks swapped
                   [scores.iloc[:50], scores.iloc[49:]],  # a lead twice
                   [scores.iloc[::-1]]):  # one chunk out of order
        with pytest.raises(ValueError, match="strictly increasing lead_id"):
            crm.write_scores(engine, chunks, (SCORED_AT + timedelta(days=1)).date(), **kwargs)
    assert crm.read_history(engine)["scoring_date"].nunique() == 1
    assert crm.read_runs(engine)["status"].tolist() == ["succeeded"] + ["failed"] * 3
