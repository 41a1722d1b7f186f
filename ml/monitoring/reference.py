"""The reference a monitoring run compares against: the champion's training data and the
scores it gave on its test window.

Where it comes from, in order:
1. a cached copy under `<reports_dir>/reference/v<version>/` (features.parquet, scores.parquet,
   reference.json), written the first time a version is monitored;
2. the `lead_features` mart (`<marts_dir>/lead_features.parquet`), cut by the split the champion
   records in its metadata (`train_start`, `validation_start`, `test_start`, `test_end`, saved
   by training): features of the snapshots in [train_start, validation_start) — the rows it was
   trained on, since the training set is exactly the mart's rows at matured snapshots joined
   point-in-time by Feast — and the champion's probabilities on the snapshots in
   [test_start, test_end] (a version refit on all matured labels has no test window: its
   validation window, [validation_start, test_start), stands in);
3. fallback, logged as a warning and named in the report (`reference_source`): when the champion
   carries no split dates, the mart's snapshots whose label window had matured by the run date
   (snapshot + label_window_days ≤ run_date) stand in for both.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ml.config import Settings
from ml.errors import DataError
from ml.model import LeadScorer

log = logging.getLogger(__name__)

FEATURES_MART = "lead_features.parquet"
LATEST_MART = "lead_features_latest.parquet"


@dataclass
class Reference:
    """Reference features (the model's columns), reference scores, and where they came from."""

    features: pd.DataFrame
    scores: np.ndarray
    source: str  # "cache", "mart" or "fallback"
    description: str


def _cache_dir(settings: Settings, version: str) -> Path:
    return settings.paths.reports_dir / "reference" / f"v{version}"


def _read_mart(settings: Settings, columns: list[str]) -> pd.DataFrame:
    path = settings.paths.marts_dir / FEATURES_MART
    if not path.is_file():
        raise DataError(
            f"no reference for drift: {path} is missing (run `lead-scoring build`, or the nightly "
            "job, to export the marts)"
        )
    frame = pd.read_parquet(path, columns=["snapshot_ts", *columns])
    frame["snapshot_ts"] = pd.to_datetime(frame["snapshot_ts"], utc=True)
    return frame


def _between(frame: pd.DataFrame, start: date, end_exclusive: date) -> pd.DataFrame:
    ts = frame["snapshot_ts"]
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end_exclusive, tz="UTC")
    return frame[(ts >= lo) & (ts < hi)].reset_index(drop=True)


def _split_dates(scorer: LeadScorer) -> tuple[date, date, date, date] | None:
    meta = scorer.metadata or {}
    try:
        return tuple(  # type: ignore[return-value]
            date.fromisoformat(str(meta[k])[:10])
            for k in ("train_start", "validation_start", "test_start", "test_end")
        )
    except (KeyError, ValueError):
        return None


def load_reference(
    settings: Settings, scorer: LeadScorer, version: str, run_date: date
) -> Reference:
    """The champion's reference features and test-window scores (see the module docstring).

    Raises:
        DataError: the mart is missing, or holds no rows in the reference window.
    """
    cache = _cache_dir(settings, version)
    mart_path = settings.paths.marts_dir / FEATURES_MART
    if (cache / "reference.json").is_file():
        meta = json.loads((cache / "reference.json").read_text())
        features = pd.read_parquet(cache / "features.parquet")
        scores = pd.read_parquet(cache / "scores.parquet")["probability"].to_numpy()
        # the mart named where it is now (a data dir copied elsewhere keeps its cache); a
        # cache written before "window" was kept has its description: its path replaced
        description = (
            f"{meta['window']} of {mart_path}"
            if "window" in meta
            else re.sub(
                rf" of \S*{re.escape(FEATURES_MART)}$", f" of {mart_path}", meta["description"]
            )
        )
        return Reference(features, scores, "cache", description)
    columns = list(scorer.feature_names)
    mart = _read_mart(settings, columns)
    dates = _split_dates(scorer)
    if dates is not None:
        train_start, validation_start, test_start, test_end = dates
        if test_end <= test_start:
            # A refit on every matured label has no test window of its own (its figures are
            # the backtest's): its scores on its validation window, the latest it learned
            # from, are the reference.
            test_start, test_end = validation_start, test_start - timedelta(days=1)
        features = _between(mart, train_start, validation_start)
        test = _between(mart, test_start, test_end + timedelta(days=1))
        source = "mart"
        window = (
            f"champion v{version}'s training window {train_start}..{validation_start} "
            f"({len(features):,} rows) and test window {test_start}..{test_end} "
            f"({len(test):,} rows)"
        )
        description = f"{window} of {mart_path}"
    else:
        cutoff = run_date - timedelta(days=settings.features.label_window_days)
        features = _between(mart, date.min, cutoff)
        test = features
        source = "fallback"
        description = (
            f"FALLBACK: champion v{version} records no training window; using every snapshot "
            f"before {cutoff} (label window matured) of {mart_path} "
            f"({len(features):,} rows) for features and scores"
        )
        log.warning("drift reference: %s", description)
    if features.empty or test.empty:
        raise DataError(f"no reference rows for drift: {description}")
    scores = scorer.predict_proba(test)
    features = features[columns]
    if source == "mart":
        cache.mkdir(parents=True, exist_ok=True)
        features.to_parquet(cache / "features.parquet", index=False)
        pd.DataFrame({"probability": scores}).to_parquet(cache / "scores.parquet", index=False)
        (cache / "reference.json").write_text(
            json.dumps({"window": window, "description": description})
        )
    return Reference(features, scores, source, description)


def load_current(settings: Settings) -> pd.DataFrame:
    """The features of the latest scoring run: `<marts_dir>/lead_features_latest.parquet`.

    Raises:
        DataError: the mart is missing.
    """
    path = settings.paths.marts_dir / LATEST_MART
    if not path.is_file():
        raise DataError(f"no current features to monitor: {path} is missing (run the nightly job)")
    return pd.read_parquet(path)
