"""The nightly batch: every open lead's latest features scored by the champion into the CRM.

Features come from the `lead_features_latest` mart — the same rows the online store is refreshed
from — projected onto the `lead_scoring` feature service's features by the scorer, so batch and
online read the same values. (Reading a million leads through the online store's per-entity
lookups would cost minutes; the Parquet mart is its source of truth.)
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml.config import Settings
from ml.errors import DataError
from ml.model import CATEGORICAL_FEATURES
from ml.registry import load_version
from ml.scoring import ScoringRunSummary, batch_score

log = logging.getLogger(__name__)


def load_latest_features(settings: Settings, path: Path | None = None) -> pd.DataFrame:
    """One row per open lead: its features at the data's as-of instant.

    The categorical attributes come as pandas categoricals (Parquet dictionaries kept): a
    handful of levels instead of a million Python strings per column, which the model's input
    matrix and the reasons' phrasing read several times faster (same values, same scores).
    """
    path = path or settings.paths.marts_dir / "lead_features_latest.parquet"
    if not path.is_file():
        raise DataError(f"latest features not found: {path} (run `lead-scoring build` first)")
    schema = pq.read_schema(path)
    dictionary = [
        name for name in CATEGORICAL_FEATURES
        if name in schema.names
        and (pa.types.is_string(schema.field(name).type)
             or pa.types.is_large_string(schema.field(name).type))
    ]
    return pq.read_table(path, read_dictionary=dictionary).to_pandas()


def features_as_of(features: pd.DataFrame) -> date:
    """The date of the data's as-of instant (the latest snapshot): the CRM date of a run."""
    return pd.to_datetime(features["snapshot_ts"]).max().date()


def score_open_leads(
    settings: Settings,
    scoring_date: date | None = None,
    run_id: str | None = None,
    *,
    model: str | int = "champion",
    features_path: Path | None = None,
) -> ScoringRunSummary:
    """Score every open lead with the champion and write the CRM tables and extract.

    Args:
        scoring_date: the CRM date of the run (re-running a date replaces it); default the date
            of the data's as-of instant (in a nightly run, today); not before it.
        model: a registry alias or version (default the champion).
        features_path: another Parquet of latest features (default the mart).
    """
    scorer, version = load_version(settings, model)
    path = features_path or settings.paths.marts_dir / "lead_features_latest.parquet"
    features = load_latest_features(settings, path)
    as_of = features_as_of(features)
    scoring_date = scoring_date or as_of
    if scoring_date < as_of:
        # scores dated before their data would carry later events into that date's history
        raise DataError(
            f"scoring date {scoring_date} is before the data's as-of date {as_of}: the features "
            f"hold events after it; score {as_of} or later (a past date: backfill_scores)"
        )
    scored_at = datetime.combine(scoring_date, time(), tzinfo=UTC)
    scores = None
    if settings.engine == "spark":
        # the same score_frame, run by Spark over the mart (ml/spark/scoring.py); the writes
        # below are the single-machine run's
        from ml.spark.scoring import spark_score_frame

        scores = spark_score_frame(settings, scorer, path)
    summary = batch_score(
        settings, features, scorer, str(version), scored_at, run_id, scores=scores
    )
    log.info("batch scoring: %s", summary.to_dict())
    return summary


def backfill_scores(
    settings: Settings, weeks: int, run_id: str | None = None, *, model: str | int = "champion"
) -> list[ScoringRunSummary]:
    """Score the weekly snapshots of the `weeks` weeks before the as-of instant as scoring runs
    of their own dates, oldest first.

    Seeds the score history when the platform starts on a CRM with history, so matured-label
    performance and business metrics exist from day one. Each date is an ordinary idempotent
    run; the current `lead_scores` keeps the latest date. Scores of weeks inside the model's
    training window are in-sample, and performance measured on them is optimistic.
    """
    path = settings.paths.marts_dir / "lead_features.parquet"
    if not path.is_file():
        raise DataError(f"features not found: {path} (run `lead-scoring build` first)")
    features = pd.read_parquet(path)
    snapshots = pd.to_datetime(features["snapshot_ts"])
    as_of = snapshots.max()
    past = sorted(snapshots[snapshots < as_of].unique())[-weeks:] if weeks > 0 else []
    scorer, version = load_version(settings, model)
    summaries = []
    for snapshot in past:
        rows = features[snapshots == snapshot]
        scored_at = pd.Timestamp(snapshot).tz_localize(UTC).to_pydatetime()
        summaries.append(batch_score(settings, rows, scorer, str(version), scored_at, run_id))
    log.info("backfilled %d scoring dates", len(summaries))
    return summaries
