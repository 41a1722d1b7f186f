"""Scoring: the one function that turns features into scores, tiers and reasons.

`score_frame` is used by batch scoring and by the real-time service alike, so the same inputs
give the same score and reasons in both. `batch_score` adds the previous score per lead, writes
the run to the CRM database (atomically, see ml/crm.py) and an extract file.

Reasons are JSON strings of lists of phrases (e.g. '["booked a meeting in the last 30 days"]'):
they go unchanged into the CRM table, the CSV/Parquet extract and the API (which may json.loads
them), so every consumer sees byte-identical text.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml import crm, reasons
from ml.config import Settings
from ml.errors import DataError
from ml.model import LeadScorer

log = logging.getLogger(__name__)

TIERS = ("A", "B", "C", "D")
SCORE_COLUMNS = ["lead_id", "probability", "score", "tier", "reasons_for", "reasons_against"]


def assign_tiers(score: np.ndarray, settings: Settings) -> np.ndarray:
    """Tier A–D from the 0–100 score and the lower bounds in settings.scoring.tiers."""
    t = settings.scoring.tiers
    return np.select([score >= t.A, score >= t.B, score >= t.C], ["A", "B", "C"], default="D")


def _score_matrix(
    scorer: LeadScorer,
    x: np.ndarray,
    values: pd.DataFrame | Mapping[str, np.ndarray],
    settings: Settings,
    n_reasons: int | None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Probability, score, tier and reasons of the leads of input matrix `x` (`values`: their
    raw feature values, which the reasons quote). Every entry point below ends here."""
    n = settings.scoring.n_reasons if n_reasons is None else n_reasons
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if n > 0:
        # One input matrix for both: the margin and the contributions behind the reasons.
        margin, contribs, _bias = scorer.margin_and_contributions_of(x, mask_missing=True)
    else:
        margin, contribs = scorer.margin_and_contributions_of(x)[0], None
    probability = scorer.probability(margin)
    score = np.round(probability * 100.0, 1)
    timings["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if contribs is not None:
        reasons_for, reasons_against = reasons.explain(contribs, scorer.feature_names, values, n)
    else:
        reasons_for = reasons_against = np.full(len(x), "[]", dtype=object)
    timings["reasons"] = time.perf_counter() - t0
    out = {
        "probability": probability,
        "score": score,
        "tier": assign_tiers(score, settings),
        "reasons_for": reasons_for,
        "reasons_against": reasons_against,
    }
    return out, timings


def _score(
    scorer: LeadScorer, features: pd.DataFrame, settings: Settings, n_reasons: int | None
) -> tuple[pd.DataFrame, dict[str, float]]:
    if "lead_id" not in features.columns:
        raise DataError(
            "the features frame has no lead_id column; score the feature-service "
            "output, which carries the entity key"
        )
    t0 = time.perf_counter()
    x = scorer.matrix(features)
    matrix_s = time.perf_counter() - t0
    out, timings = _score_matrix(scorer, x, features, settings, n_reasons)
    timings = {"matrix": matrix_s, **timings}
    frame = pd.DataFrame({"lead_id": features["lead_id"].astype(str).to_numpy(), **out})
    return frame[SCORE_COLUMNS], timings


def score_frame(
    scorer: LeadScorer, features: pd.DataFrame, settings: Settings, *, n_reasons: int | None = None
) -> pd.DataFrame:
    """Score leads: one row per input row, in input order.

    Returns columns lead_id, probability (calibrated), score (= round(probability × 100, 1)),
    tier (A–D), reasons_for and reasons_against (JSON strings of lists of phrases; `n_reasons`
    per side, default settings.scoring.n_reasons).
    """
    return _score(scorer, features, settings, n_reasons)[0]


def score_records(
    scorer: LeadScorer,
    records: Sequence[Mapping[str, Any]],
    settings: Settings,
    *,
    n_reasons: int | None = None,
) -> list[dict[str, Any]]:
    """`score_frame` of a few leads given as mappings (lead_id and every feature of the model,
    None for null), without a DataFrame: the real-time service's path. Same values as
    `score_frame` of a frame of the same rows; one dict per lead with its SCORE_COLUMNS
    (numbers as Python floats).

    Raises:
        DataError: a lead lacks features the model needs (named in the message).
    """
    lacking = sorted({n for r in records for n in scorer.feature_names if n not in r})
    if lacking:
        raise DataError(
            f"the leads lack {len(lacking)} feature(s) the model needs: {', '.join(lacking)}; "
            "retrieve features through the `lead_scoring` feature service"
        )
    x = scorer.matrix_records(records)
    values = {
        name: np.array([r.get(name) for r in records], dtype=object)
        for name in scorer.feature_names
    }
    out, _ = _score_matrix(scorer, x, values, settings, n_reasons)
    columns = [out[c].tolist() for c in SCORE_COLUMNS[1:]]
    return [
        dict(zip(SCORE_COLUMNS, (str(r["lead_id"]), *row), strict=True))
        for r, row in zip(records, zip(*columns, strict=True), strict=True)
    ]


@dataclass
class ScoringRunSummary:
    """What a batch scoring run did, for the CLI, Dagster metadata and logs."""

    scoring_date: date
    run_id: str
    model_version: str
    rows: int
    tiers: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    extract_path: str | None = None
    new_leads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def extract_path(settings: Settings, scoring_date: date) -> Path:
    """The extract file of a scoring date: <data_dir>/crm/extracts/scores_<date>.<ext>."""
    ext = settings.scoring.extract_format
    return settings.paths.data_dir / "crm" / "extracts" / f"scores_{scoring_date.isoformat()}.{ext}"


def write_extract(settings: Settings, scores: pd.DataFrame, scoring_date: date) -> Path:
    """Write the run's extract file atomically (temporary file in the same folder, then rename)."""
    path = extract_path(settings, scoring_date)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if settings.scoring.extract_format == "parquet":
            scores.to_parquet(tmp, index=False)
        else:
            scores.to_csv(tmp, index=False)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    finally:
        tmp.unlink(missing_ok=True)
    return path


def batch_score(
    settings: Settings,
    features: pd.DataFrame,
    scorer: LeadScorer,
    model_version: str,
    scored_at: datetime,
    run_id: str | None = None,
) -> ScoringRunSummary:
    """Score all leads of `features`, add score_change, write the CRM tables and the extract.

    The scoring date is `scored_at`'s UTC date; re-running a date replaces that run. score_change
    is against the latest earlier run in the history (null for leads new since then).
    """
    if features["lead_id"].duplicated().any():
        raise DataError(
            "the features frame has several rows for some lead_id; batch scoring "
            "expects the latest snapshot only (one row per lead)"
        )
    scored_at = scored_at.replace(tzinfo=UTC) if scored_at.tzinfo is None else scored_at
    scoring_date = scored_at.astimezone(UTC).date()
    run_id = run_id or f"manual-{uuid.uuid4().hex[:12]}"
    scores, seconds = _score(scorer, features, settings, None)

    engine = crm.crm_engine(settings)
    try:
        t0 = time.perf_counter()
        previous = crm.previous_scores(engine, scoring_date)
        prev = pd.Series(
            previous["score"].to_numpy(dtype=float), index=previous["lead_id"].astype(str)
        )
        before = scores["lead_id"].map(prev)
        scores["score_change"] = np.round(scores["score"] - before, 1)
        model_name = settings.registry.model_name
        crm.write_scores(
            engine,
            scores,
            scoring_date,
            model_name=model_name,
            model_version=str(model_version),
            scored_at=scored_at,
            run_id=run_id,
            batch_size=settings.scoring.write_batch_size,
        )
        seconds["write"] = time.perf_counter() - t0
    finally:
        engine.dispose()

    t0 = time.perf_counter()
    extract = scores.assign(
        model_name=model_name,
        model_version=str(model_version),
        scored_at=scored_at,
        scoring_date=scoring_date,
        run_id=run_id,
    )
    path = write_extract(settings, extract, scoring_date)
    seconds["extract"] = time.perf_counter() - t0

    counts = scores["tier"].value_counts()
    summary = ScoringRunSummary(
        scoring_date=scoring_date,
        run_id=run_id,
        model_version=str(model_version),
        rows=len(scores),
        tiers={t: int(counts.get(t, 0)) for t in TIERS},
        seconds={k: round(v, 3) for k, v in seconds.items()},
        extract_path=str(path),
        new_leads=int(before.isna().sum()),
    )
    log.info(
        "scored %d leads for %s with model version %s: %s",
        summary.rows,
        scoring_date,
        model_version,
        summary.tiers,
    )
    return summary
