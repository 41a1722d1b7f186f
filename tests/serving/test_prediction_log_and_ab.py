"""The prediction-log writer never blocks; the A/B report finds planted differences only."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ml.config import load_settings
from ml.serving.ab_report import ab_report, sample_size, two_proportion_test
from ml.serving.prediction_log import PredictionLogWriter, log_engine, prediction_log, read_log


def row(i: int, variant: str = "champion") -> dict:
    return {"logged_at": datetime(2026, 1, 1), "request_id": f"r{i}", "endpoint": "predict",
            "lead_id": f"L{i}", "mode": "ab", "variant": variant, "served": True,
            "model_name": "lead_scoring", "model_version": "1", "probability": 0.1,
            "score": 10.0, "tier": "C", "latency_ms": 1.0, "in_online_store": True,
            "status": "ok", "error": None}


def test_writer_never_blocks_and_counts_what_it_drops(tmp_path):
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'log.db'}", max_queue=10)
    started = time.perf_counter()
    writer.submit([row(i) for i in range(1000)])  # not started: nothing drains the queue
    assert time.perf_counter() - started < 0.5
    assert writer.dropped == 990 and writer.pending == 10
    writer.start()
    assert writer.flush()
    writer.stop()
    assert writer.written == 10


def test_log_store_is_sqlite_in_wal_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'serving' / 'predictions.db'}"
    writer = PredictionLogWriter(url)
    writer.start()
    writer.submit([row(1), row(2)])
    writer.stop()
    with log_engine(url).connect() as conn:
        assert conn.execute(sa.text("pragma journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("select count(*) from prediction_log")).scalar() == 2


def test_writer_keeps_its_connection_and_follows_a_rotated_file(tmp_path):
    """One connection across batches (closing the last one checkpoints the WAL each time); a
    log file moved away (rotation) keeps its rows, and the next rows start a new file."""
    path = tmp_path / "predictions.db"
    url = f"sqlite:///{path}"
    connects = []
    writer = PredictionLogWriter(url)
    writer.start()
    sa.event.listen(writer._engine, "connect", lambda *_: connects.append(1))
    for i in range(3):
        writer.submit([row(i)])
        assert writer.flush()
    assert len(connects) == 1 and writer.written == 3
    path.rename(tmp_path / "predictions.1.db")
    for wal in tmp_path.glob("predictions.db-*"):
        wal.rename(tmp_path / wal.name.replace("predictions.db", "predictions.1.db"))
    writer.submit([row(3), row(4)])
    assert writer.flush()
    writer.stop()
    assert writer.written == 5 and writer.failed == 0

    def count(file):
        with sa.create_engine(f"sqlite:///{file}").connect() as conn:
            return conn.execute(sa.text("select count(*) from prediction_log")).scalar()

    assert count(tmp_path / "predictions.1.db") == 3 and count(path) == 2


def test_writer_stores_exactly_what_sqlalchemy_stores(tmp_path):
    """The writer's SQLite executemany of tuples stores each value as SQLAlchemy's insert does
    (datetimes as text, booleans as 0/1, NULLs), byte for byte."""
    rows = [row(0), {**row(1, "challenger"), "served": False, "probability": None,
                     "score": None, "tier": None, "status": "error",
                     "error": "model 'x' failed: ünïcode, \"quotes\"",
                     "logged_at": datetime(2026, 3, 4, 5, 6, 7, 89)}]
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'fast.db'}")
    writer.start()
    writer.submit(rows)
    writer.stop()
    plain = log_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with plain.begin() as conn:
        conn.execute(prediction_log.insert(), rows)

    def stored(file):
        with sa.create_engine(f"sqlite:///{file}").connect() as conn:
            return conn.execute(sa.text(
                "select *, typeof(logged_at), typeof(served), typeof(probability) "
                "from prediction_log order by id")).all()

    assert writer.written == 2 and stored(tmp_path / "fast.db") == stored(tmp_path / "plain.db")


def test_every_served_prediction_is_logged(client):
    ids = [f"L{i:07d}" for i in range(10)]
    for lead in ids:
        assert client.post("/predict", json={"lead_id": lead}).status_code == 200
    client.app.state.writer.flush()
    log = read_log(client.app.state.settings)
    served = log[log["served"]]
    assert served["lead_id"].tolist() == ids
    assert set(served["model_version"]) == {"1"} and (served["latency_ms"] > 0).all()
    assert served[["score", "tier", "variant", "logged_at"]].notna().all().all()


# ---------------------------------------------------------------- A/B report

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def simulate(rate_a: float, rate_b: float, n: int = 6000, seed: int = 0):
    """A log of n leads per variant scored 90 days before AS_OF, and their conversions."""
    rng = np.random.default_rng(seed)
    rows, conversions = [], []
    for v, (variant, rate) in enumerate((("champion", rate_a), ("challenger", rate_b))):
        score = rng.uniform(0, 100, n)
        # the score is informative: conversion odds rise with it, the mean stays `rate`
        p = np.clip(rate * (0.4 + 1.2 * score / 100), 0, 1)
        converted = rng.random(n) < p
        logged = AS_OF - timedelta(days=90)
        for i in range(n):
            lead = f"{variant}-{i}"
            rows.append({"lead_id": lead, "variant": variant, "served": True, "status": "ok",
                         "score": score[i], "tier": "A" if score[i] > 50 else "C",
                         "model_version": str(v + 1),
                         "logged_at": logged.replace(tzinfo=None)})
            if converted[i]:
                conversions.append({"lead_id": lead,
                                    "converted_at": logged + timedelta(days=10)})
    return pd.DataFrame(rows), pd.DataFrame(conversions)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(overrides={"paths.data_dir": str(tmp_path_factory.mktemp("ab"))})


def test_ab_report_detects_a_planted_difference(settings):
    log, conv = simulate(0.10, 0.14)
    report = ab_report(settings, log, conv, AS_OF)
    assert report.significant and report.p_value < settings.serving.ab.alpha
    assert report.verdict.startswith("challenger converts better")
    a, b = report.variants["champion"], report.variants["challenger"]
    assert a.leads == b.leads == 6000
    assert abs(a.conversion_rate - 0.10) < 0.015 and abs(b.conversion_rate - 0.14) < 0.015
    assert a.auc_ci[0] < a.auc < a.auc_ci[1] and a.auc > 0.55
    assert b.by_tier["A"]["conversion_rate"] > b.by_tier["C"]["conversion_rate"]


def test_ab_report_finds_no_difference_between_equal_variants(settings):
    significant = [ab_report(settings, *simulate(0.10, 0.10, n=3000, seed=s), AS_OF).significant
                   for s in range(20)]
    # at alpha = 0.05 about 1 in 20 equal experiments is a false positive
    assert sum(significant) <= 3
    report = ab_report(settings, *simulate(0.10, 0.10, n=3000, seed=0), AS_OF)
    assert not report.significant and report.verdict.startswith("no significant difference")


def test_ab_report_counts_only_matured_labels(settings):
    log, conv = simulate(0.10, 0.10, n=500)
    # 30 days after the predictions their 60-day label window is still open
    report = ab_report(settings, log, conv, AS_OF - timedelta(days=60))
    assert report.leads_matured == 0 and "not enough" in report.verdict


def test_statistics_match_textbook_values():
    z, p = two_proportion_test(100, 1000, 130, 1000)
    # pooled p 0.115, se = sqrt(0.115 * 0.885 * 2 / 1000) = 0.014267, z = 0.03 / se
    assert z == pytest.approx(2.1027, abs=1e-3) and p == pytest.approx(0.0355, abs=1e-3)
    # 10 % -> 12 %, alpha 0.05, power 0.8: about 3,841 per group
    assert 3800 <= sample_size(0.10, 0.02, 0.05, 0.8) <= 3900


def test_ab_report_cli(settings, tmp_path):
    from ml.cli import app

    log, conv = simulate(0.10, 0.14, n=500)
    writer = PredictionLogWriter(settings.serving.prediction_log_url)
    writer.start()
    writer.submit([{**row(0), **r} for r in log.to_dict("records")])
    writer.stop()
    conv_path = tmp_path / "conversions.csv"
    conv.to_csv(conv_path, index=False)
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  data_dir: {settings.paths.data_dir}\n")
    result = CliRunner().invoke(app, ["ab-report", "--config", str(config), "--conversions",
                                      str(conv_path), "--as-of", "2026-06-01"])
    assert result.exit_code == 0, result.output
    assert "champion (v1): 500 leads" in result.output
    assert "leads per variant to detect" in result.output
