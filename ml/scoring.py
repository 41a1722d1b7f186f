"""Scoring: the one function that turns features into scores, tiers and reasons.

`score_frame` is used by batch scoring and by the real-time service alike, so the same inputs
give the same score and reasons in both. `batch_score` adds the previous score per lead, writes
the run to the CRM database (atomically, see ml/crm.py) and an extract file.

The extract is inside the run's guarantee: it is written completely as a pending file named for
the run *before* the CRM transaction commits (in a thread while the CRM rows are inserted; the
transaction waits for it before committing), and renamed into place after it. The commit is the
run's one decision point: a pending file whose run committed (`scoring_runs` says `succeeded`,
the latest of its date) is published by the next run of any date (`recover_extracts`), any other
pending file is deleted. So after a kill -9 anywhere, the next run leaves every date's extract
equal to that date's committed run, never an older one and never a run that did not commit.

Reasons are JSON strings of lists of phrases (e.g. '["booked a meeting in the last 30 days"]'):
they go unchanged into the CRM table, the CSV/Parquet extract and the API (which may json.loads
them), so every consumer sees byte-identical text.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml import crm, fast_trees, reasons
from ml.config import Settings
from ml.errors import DataError
from ml.model import LeadScorer

log = logging.getLogger(__name__)

TIERS = ("A", "B", "C", "D")
# From this many leads a batch's margin and contributions come from the compiled tree walker
# (ml/fast_trees.py: bit-identical to XGBoost's, several times faster); below it XGBoost's own
# predict is as quick, and nothing is compiled for a handful of leads (the service's calls).
COMPILED_MIN_ROWS = 20_000
SCORE_COLUMNS = ["lead_id", "probability", "score", "tier", "reasons_for", "reasons_against"]


def assign_tiers(score: np.ndarray, settings: Settings) -> np.ndarray:
    """Tier A–D from the 0–100 score and the lower bounds in settings.scoring.tiers."""
    t = settings.scoring.tiers
    if len(score) <= 64:  # a few leads (the service): np.select costs ~20 us per call
        return np.array(["A" if v >= t.A else "B" if v >= t.B else "C" if v >= t.C else "D"
                         for v in score.tolist()], dtype="<U1")
    return np.select([score >= t.A, score >= t.B, score >= t.C], ["A", "B", "C"], default="D")


def _score_matrix(
    scorer: LeadScorer,
    x: np.ndarray,
    values: pd.DataFrame | Mapping[str, np.ndarray],
    settings: Settings,
    n_reasons: int | None,
    *,
    compiled: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Probability, score, tier and reasons of the leads of input matrix `x` (`values`: their
    raw feature values, which the reasons quote). Every entry point below ends here.

    `compiled`: margin and contributions from ml/fast_trees.py where it covers the model (the
    same numbers as XGBoost's, bit for bit)."""
    n = settings.scoring.n_reasons if n_reasons is None else n_reasons
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if n > 0:
        # One input matrix for both: the margin and the contributions behind the reasons.
        margin, contribs = _margin_and_contributions(scorer, x, compiled)
    else:
        margin, contribs = scorer.margin_and_contributions_of(x)[0], None
    probability = scorer.probability(margin)
    score = np.round(probability * 100.0, 1)
    timings["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if contribs is not None:
        reasons_for, reasons_against = reasons.explain(
            contribs, scorer.feature_names, values, n, settings.vocabulary
        )
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


def _margin_and_contributions(
    scorer: LeadScorer, x: np.ndarray, compiled: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Margin and contributions (missing inputs masked) of input matrix `x`."""
    if compiled and scorer.linear is None and scorer.booster is not None and fast_trees.available():
        try:
            return fast_trees.margin_and_contributions(scorer.booster, x, mask_missing=True)
        except fast_trees.Unsupported as exc:
            log.info("compiled tree walker not used (%s): XGBoost computes the contributions", exc)
    margin, contribs, _bias = scorer.margin_and_contributions_of(x, mask_missing=True)
    return margin, contribs


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
    out, timings = _score_matrix(
        scorer, x, features, settings, n_reasons, compiled=len(x) >= COMPILED_MIN_ROWS
    )
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
    return _extracts_dir(settings) / f"scores_{scoring_date.isoformat()}.{ext}"


def _extracts_dir(settings: Settings) -> Path:
    return settings.paths.data_dir / "crm" / "extracts"


def write_extract(settings: Settings, scores: pd.DataFrame, scoring_date: date) -> Path:
    """Write the run's extract file atomically (temporary file in the same folder, then rename)."""
    path = extract_path(settings, scoring_date)
    _write_atomically(settings, scores, path, path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    return path


def _write_atomically(settings: Settings, scores: pd.DataFrame, path: Path, tmp: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if settings.scoring.extract_format == "parquet":
            scores.to_parquet(tmp, index=False)
        else:
            scores.to_csv(tmp, index=False)
        with open(tmp, "rb") as f:  # on disk before the rename (and before the CRM commit)
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    finally:
        tmp.unlink(missing_ok=True)


_PENDING = ".pending"


def _pending_path(settings: Settings, scoring_date: date, run_id: str) -> Path:
    """Where a run's extract waits for the CRM commit: <extracts>/.pending/<date>/<run id>.<ext>."""
    final = extract_path(settings, scoring_date)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return final.parent / _PENDING / scoring_date.isoformat() / f"{safe}{final.suffix}"


def recover_extracts(settings: Settings, runs: pd.DataFrame | None = None) -> list[Path]:
    """Finish what a killed run left between its CRM commit and its extract's rename.

    A pending extract whose run is its date's latest `succeeded` run in `scoring_runs` is moved
    into place; any other pending extract (its run was killed before committing, or a later run
    of the date committed since) is deleted. Idempotent. Returns the extracts published.
    """
    root = _extracts_dir(settings) / _PENDING
    if not root.is_dir():
        return []
    if runs is None:
        engine = crm.crm_engine(settings)
        try:
            runs = crm.read_runs(engine) if crm._has_table(engine, "scoring_runs") else None
        finally:
            engine.dispose()
    committed: dict[str, str] = {}
    if runs is not None and len(runs):
        done = runs[runs["status"] == "succeeded"]
        for day, rows in done.groupby(done["scoring_date"].astype(str)):
            committed[day] = str(rows.sort_values("id")["run_id"].iloc[-1])
    published = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for pending in sorted(folder.iterdir()):
            day = date.fromisoformat(folder.name)
            if pending.name == _pending_path(settings, day, committed.get(folder.name, "")).name:
                final = extract_path(settings, day)
                os.replace(pending, final)
                published.append(final)
                log.warning("published the extract of committed run %s for %s (its run was "
                            "interrupted before renaming it)", committed[folder.name], day)
            else:
                pending.unlink(missing_ok=True)
        _remove_empty(folder)
    return published


def _remove_empty(folder: Path) -> None:
    """Remove a date's pending folder and the pending root once they are empty."""
    for path in (folder, folder.parent):
        with contextlib.suppress(OSError):
            path.rmdir()


def _aligned(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Scores computed elsewhere, one per row of `features` and in its order."""
    ids = features["lead_id"].astype(str)
    out = scores[SCORE_COLUMNS].set_index("lead_id").reindex(ids).reset_index()
    if len(scores) != len(features) or out["score"].isna().any():
        raise DataError(
            f"{len(scores)} precomputed scores do not cover the {len(features)} leads scored"
        )
    return out


class _Background:
    """A function run in a thread (file writing releases the GIL); `result` waits for it and
    raises what it raised."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self.seconds = 0.0

        def run() -> None:
            t0 = time.perf_counter()
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                self._error = exc
            self.seconds = time.perf_counter() - t0

        self._thread = threading.Thread(target=run, name="scoring-extract", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> None:
        self.wait()
        if self._error is not None:
            raise self._error


def _previous_of(lead_ids: pd.Series, previous: pd.DataFrame) -> pd.Series:
    """Each lead's score in the previous run (NaN for a lead new since then)."""
    index = pd.Index(previous["lead_id"].astype(str))
    pos = index.get_indexer(lead_ids.astype(str))
    values = previous["score"].to_numpy(dtype=float)
    before = np.where(pos >= 0, values[pos] if len(values) else np.nan, np.nan)
    return pd.Series(before, index=lead_ids.index)


def batch_score(
    settings: Settings,
    features: pd.DataFrame,
    scorer: LeadScorer,
    model_version: str,
    scored_at: datetime,
    run_id: str | None = None,
    *,
    scores: pd.DataFrame | None = None,
) -> ScoringRunSummary:
    """Score all leads of `features`, add score_change, write the CRM tables and the extract.

    The scoring date is `scored_at`'s UTC date; re-running a date replaces that run. score_change
    is against the latest earlier run in the history (null for leads new since then).

    Args:
        scores: score_frame's output for `features`, already computed elsewhere (the Spark job
            of ml/spark/scoring.py); None scores here.
    """
    if features["lead_id"].duplicated().any():
        raise DataError(
            "the features frame has several rows for some lead_id; batch scoring "
            "expects the latest snapshot only (one row per lead)"
        )
    scored_at = scored_at.replace(tzinfo=UTC) if scored_at.tzinfo is None else scored_at
    scoring_date = scored_at.astimezone(UTC).date()
    run_id = run_id or f"manual-{uuid.uuid4().hex[:12]}"
    if scores is None:
        scores, seconds = _score(scorer, features, settings, None)
    else:
        scores, seconds = _aligned(scores, features), {}

    model_name = settings.registry.model_name
    recover_extracts(settings)  # a run killed after its commit: its extract first
    engine = crm.crm_engine(settings)
    extract_job: _Background | None = None
    try:
        t0 = time.perf_counter()
        previous = crm.previous_scores(engine, scoring_date)
        before = _previous_of(scores["lead_id"], previous)
        scores["score_change"] = np.round(scores["score"] - before, 1)
        seconds["previous"] = time.perf_counter() - t0
        # The extract is complete on disk before the commit, published after it (see above).
        extract = scores.assign(
            model_name=model_name,
            model_version=str(model_version),
            scored_at=scored_at,
            scoring_date=scoring_date,
            run_id=run_id,
        )
        pending = _pending_path(settings, scoring_date, run_id)
        pending.parent.mkdir(parents=True, exist_ok=True)
        extract_job = _Background(
            lambda: _write_atomically(
                settings, extract, pending, pending.with_name(f".{pending.name}.tmp")
            )
        )
        t1 = time.perf_counter()
        crm.write_scores(
            engine,
            scores,
            scoring_date,
            model_name=model_name,
            model_version=str(model_version),
            scored_at=scored_at,
            run_id=run_id,
            batch_size=settings.scoring.write_batch_size,
            before_commit=extract_job.result,
        )
        seconds["write"] = time.perf_counter() - t1
        seconds["extract"] = extract_job.seconds  # alongside the write, not after it
    except BaseException:
        if extract_job is not None:
            extract_job.wait()  # never clean up under a writer that is still running
        with contextlib.suppress(Exception):
            recover_extracts(settings)  # failed before committing: the pending file goes
        raise
    finally:
        engine.dispose()
    path = extract_path(settings, scoring_date)
    os.replace(pending, path)
    _remove_empty(pending.parent)

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
