"""Scoring: the one function that turns features into scores, tiers and reasons.

`score_frame` is used by batch scoring and by the real-time service alike, so the same inputs
give the same score and reasons in both. `batch_score` adds the previous score per lead, writes
the run to the CRM database (atomically, see ml/crm.py) and an extract file.

The extract is inside the run's guarantee: it is written completely as a pending file named for
the run *before* the CRM transaction commits (chunk by chunk, by a thread, while the CRM rows
are inserted; the transaction waits for it before committing), and renamed into place after it.
The commit is the run's one decision point: a pending file whose run committed (`scoring_runs`
says `succeeded`, the latest of its date) is published by the next run of any date
(`recover_extracts`), any other pending file is deleted. So after a kill -9 anywhere, the next
run leaves every date's extract equal to that date's committed run, never an older one and never
a run that did not commit.

Reasons are JSON strings of lists of phrases (e.g. '["booked a meeting in the last 30 days"]'):
they go unchanged into the CRM table, the CSV/Parquet extract and the API (which may json.loads
them), so every consumer sees byte-identical text.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml import crm, fast_trees, reasons
from ml.config import Settings
from ml.errors import DataError
from ml.model import FEW_ROWS, LeadScorer

log = logging.getLogger(__name__)

TIERS = ("A", "B", "C", "D")
# From this many leads a batch's margin and contributions come from the compiled tree walker
# (ml/fast_trees.py: bit-identical to XGBoost's, several times faster); below it XGBoost's own
# predict is as quick. The service's few leads (`score_records`) use the walker's one-thread
# kernel once its model loader has compiled it.
COMPILED_MIN_ROWS = 20_000
SCORE_COLUMNS = ["lead_id", "probability", "score", "tier", "reasons_for", "reasons_against"]


def assign_tiers(score: np.ndarray, settings: Settings) -> np.ndarray:
    """Tier A–D from the 0–100 score and the lower bounds in settings.scoring.tiers."""
    t = settings.scoring.tiers
    if len(score) <= FEW_ROWS:  # a few leads (the service): np.select costs ~20 us per call
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
        margin, contribs = scorer.margin_and_masked_contributions(x, compiled=compiled)
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


def _score(
    scorer: LeadScorer,
    features: pd.DataFrame,
    settings: Settings,
    n_reasons: int | None,
    *,
    compiled: bool | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    if "lead_id" not in features.columns:
        raise DataError(
            "the features frame has no lead_id column; score the feature-service "
            "output, which carries the entity key"
        )
    t0 = time.perf_counter()
    x = scorer.matrix(features)
    matrix_s = time.perf_counter() - t0
    if compiled is None:
        compiled = len(x) >= COMPILED_MIN_ROWS
    out, timings = _score_matrix(scorer, x, features, settings, n_reasons, compiled=compiled)
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
    names = scorer.feature_names
    # one object array of every value, each feature a column view of it (the reasons quote them)
    block = np.empty((len(records), len(names)), dtype=object)
    block[:] = [[r.get(name) for name in names] for r in records]
    values = {name: block[:, j] for j, name in enumerate(names)}
    # The compiled walker once the service's model loader warmed it up (never compiled here).
    out, _ = _score_matrix(scorer, x, values, settings, n_reasons,
                           compiled=fast_trees.serial_ready())
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
        _seal_extract(tmp, path)  # atomic on POSIX: readers see the old file or the new one
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


# Leads per chunk of the nightly pipeline (see batch_score): large enough that the tree walker's
# threads and numpy's calls run long, small enough that scoring and writing overlap closely.
PIPELINE_ROWS = 100_000
# The last PIPELINE_ROWS leads go in chunks of this many: once the last chunk is scored the run
# still inserts it before the commit, alone on the critical path (~0.4 s for 100k leads).
PIPELINE_TAIL_ROWS = 25_000


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class _Ahead:
    """The items of an iterator computed in a thread, at most `depth` ahead of the consumer.

    Batch scoring's chunks: the tree walker (numba, nogil) and numpy's long calls release the
    GIL, and so does SQLite while it inserts, so chunk i+1 is scored while chunk i is written.
    An exception of the iterator is raised to the consumer; `close` stops the thread early.
    """

    def __init__(self, items: Iterator[Any], depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(items,), name="scoring-chunks", daemon=True
        )
        self._thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(_Failed(exc))
            return
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return True
        return False

    def __iter__(self) -> Iterator[Any]:
        while (item := self._queue.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _ExtractWriter:
    """The run's extract written chunk by chunk in a thread (Parquet row groups or CSV lines)
    into a temporary file beside `pending`, which `finish` moves to `pending` once it is on
    disk. File writing and Parquet encoding release the GIL: the extract costs the run no wall
    time of its own."""

    def __init__(self, settings: Settings, pending: Path, constants: Mapping[str, Any]) -> None:
        self._format = settings.scoring.extract_format
        self._constants = dict(constants)  # the run's columns that hold one value
        self._pending = pending
        self._tmp = pending.with_name(f".{pending.name}.tmp")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="scoring-extract", daemon=True)
        self._thread.start()

    def add(self, chunk: pd.DataFrame) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def _run(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        first = True
        try:
            self._pending.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.ExitStack() as files:
                text_file = None
                if self._format != "parquet":
                    text_file = files.enter_context(
                        open(self._tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115
                    )
                while (chunk := self._queue.get()) is not _END:
                    if self._error is not None:
                        continue  # drained until the end, so `add` never blocks
                    t0 = time.perf_counter()
                    try:
                        if text_file is not None:
                            chunk.assign(**self._constants).to_csv(
                                text_file, header=first, index=False
                            )
                        elif writer is None:  # the file's schema: pandas' own conversion
                            table = pa.Table.from_pandas(
                                chunk.assign(**self._constants), preserve_index=False
                            )
                            writer = files.enter_context(
                                pq.ParquetWriter(self._tmp, table.schema)
                            )
                            writer.write_table(table)
                        else:  # the run's constants repeated by Arrow, not as Python objects
                            writer.write_table(self._with_constants(chunk, writer.schema))
                        first = False
                    except BaseException as exc:  # noqa: BLE001 - raised by add/finish
                        self._error = exc
                    self.seconds += time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 - raised by finish
            self._error = self._error or exc

    def _with_constants(self, chunk: pd.DataFrame, schema: Any) -> Any:
        """The Arrow table of a chunk and the run's constants, in the file's `schema`."""
        import pyarrow as pa

        names = [n for n in schema.names if n not in self._constants]
        table = pa.Table.from_pandas(chunk[names], schema=pa.schema(
            [schema.field(n) for n in names]), preserve_index=False)
        columns = [
            table.column(n) if n in table.column_names
            else pa.repeat(pa.scalar(self._constants[n], type=schema.field(n).type), len(chunk))
            for n in schema.names
        ]
        return pa.Table.from_arrays(columns, schema=schema)

    def finish(self) -> None:
        """Wait for the last chunk, then put the file in place on disk; raise what failed."""
        self._queue.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        t0 = time.perf_counter()
        _seal_extract(self._tmp, self._pending)
        self.seconds += time.perf_counter() - t0

    def abort(self) -> None:
        """Stop and remove the temporary file (the run failed before its commit)."""
        self._error = self._error or RuntimeError("scoring run aborted")
        with contextlib.suppress(queue.Full):
            self._queue.put(_END, timeout=5)
        self._thread.join()
        self._tmp.unlink(missing_ok=True)


def _seal_extract(tmp: Path, path: Path) -> None:
    """A written extract to disk (fsync) and into place, atomically."""
    with open(tmp, "rb") as f:  # on disk before the rename (and before the CRM commit)
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _previous_of(lead_ids: pd.Series, previous: pd.Index, scores: np.ndarray) -> pd.Series:
    """Each lead's score in the previous run (NaN for a lead new since then); `previous` holds
    the previous run's lead ids, `scores` their scores."""
    pos = previous.get_indexer(lead_ids.astype(str))
    before = np.where(pos >= 0, scores[pos] if len(scores) else np.nan, np.nan)
    return pd.Series(before, index=lead_ids.index)


def _in_lead_order(features: pd.DataFrame) -> pd.DataFrame:
    """The features sorted by lead_id (as text), as the CRM's key: inserts become appends."""
    ids = features["lead_id"].astype(str)
    if ids.is_monotonic_increasing:
        return features
    return features.iloc[np.argsort(ids.to_numpy(dtype=object), kind="stable")]


def _chunks_of(
    scorer: LeadScorer, features: pd.DataFrame, settings: Settings, scores: pd.DataFrame | None
) -> Iterator[tuple[pd.DataFrame, dict[str, float]]]:
    """(scores, seconds) per PIPELINE_ROWS leads of `features`, in its order: scored here, or
    slices of `scores` computed elsewhere (aligned to `features`). At least one chunk."""
    compiled = len(features) >= COMPILED_MIN_ROWS
    for lo, hi in _chunk_bounds(len(features)):
        if scores is None:
            yield _score(scorer, features.iloc[lo:hi], settings, None, compiled=compiled)
        else:
            yield scores.iloc[lo:hi].reset_index(drop=True), {}


def _chunk_bounds(n: int) -> list[tuple[int, int]]:
    """[lo, hi) of the pipeline's chunks of `n` leads: PIPELINE_ROWS each, the last PIPELINE_ROWS
    (or fewer) in chunks of PIPELINE_TAIL_ROWS. At least one chunk, empty if n is 0."""
    tail = max(n - PIPELINE_ROWS, 0)
    starts = [*range(0, tail, PIPELINE_ROWS), *range(tail, n, PIPELINE_TAIL_ROWS)] or [0]
    return list(zip(starts, [*starts[1:], n], strict=True))


@dataclass
class _Tally:
    """What the chunks of a run add up to, for its summary."""

    rows: int = 0
    new_leads: int = 0
    tiers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, chunk: pd.DataFrame, before: pd.Series, seconds: Mapping[str, float]) -> None:
        self.rows += len(chunk)
        self.new_leads += int(before.isna().sum())
        for tier, count in chunk["tier"].value_counts().items():
            self.tiers[str(tier)] = self.tiers.get(str(tier), 0) + int(count)
        for part, value in seconds.items():
            self.seconds[part] = self.seconds.get(part, 0.0) + value


def _changed(
    chunks: Iterator[tuple[pd.DataFrame, dict[str, float]]],
    previous: pd.DataFrame,
    extract: _ExtractWriter,
    tally: _Tally,
) -> Iterator[pd.DataFrame]:
    """Each scored chunk with its score_change, handed to the extract writer and tallied on its
    way to the CRM transaction."""
    index = pd.Index(previous["lead_id"].astype(str))
    values = previous["score"].to_numpy(dtype=float)
    for chunk, seconds in chunks:
        before = _previous_of(chunk["lead_id"], index, values)
        chunk["score_change"] = np.round(chunk["score"].to_numpy() - before.to_numpy(), 1)
        extract.add(chunk.copy(deep=False))  # its own frame for the other thread
        tally.add(chunk, before, seconds)
        yield chunk


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

    A pipeline, in lead_id order, PIPELINE_ROWS leads at a time: a thread scores chunk i+1 while
    chunk i is inserted into the one CRM transaction and appended to the extract by another
    thread (each of the three phases releases the GIL for most of its work, so on two cores
    they overlap instead of adding up). The rows and the extract are those of scoring all leads
    at once: every step is per lead.

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
    if scores is not None:
        scores = _aligned(scores, features)
        order = _in_lead_order(scores)
        scores = order if order is scores else order.reset_index(drop=True)
    else:
        features = _in_lead_order(features)

    model_name = settings.registry.model_name
    recover_extracts(settings)  # a run killed after its commit: its extract first
    engine = crm.crm_engine(settings)
    seconds: dict[str, float] = {}
    tally = _Tally()
    pending = _pending_path(settings, scoring_date, run_id)
    chunks = _Ahead(_chunks_of(scorer, features, settings, scores))  # scoring starts now
    extract: _ExtractWriter | None = None
    try:
        t0 = time.perf_counter()
        previous = crm.previous_scores(engine, scoring_date)
        seconds["previous"] = time.perf_counter() - t0
        # The extract is complete on disk before the commit, published after it (see above).
        constants = {
            "model_name": model_name,
            "model_version": str(model_version),
            "scored_at": scored_at,
            "scoring_date": scoring_date,
            "run_id": run_id,
        }
        extract = _ExtractWriter(settings, pending, constants)
        t1 = time.perf_counter()
        crm.write_scores(
            engine,
            _changed(iter(chunks), previous, extract, tally),
            scoring_date,
            model_name=model_name,
            model_version=str(model_version),
            scored_at=scored_at,
            run_id=run_id,
            batch_size=settings.scoring.write_batch_size,
            before_commit=extract.finish,
        )
        seconds["write"] = time.perf_counter() - t1  # scoring ran meanwhile, in its thread
        seconds["extract"] = extract.seconds  # alongside the write, not after it
    except BaseException:
        chunks.close()
        if extract is not None:
            extract.abort()  # never clean up under a writer that is still running
        with contextlib.suppress(Exception):
            recover_extracts(settings)  # failed before committing: the pending file goes
        raise
    finally:
        engine.dispose()
    chunks.close()
    path = extract_path(settings, scoring_date)
    os.replace(pending, path)
    _remove_empty(pending.parent)

    summary = ScoringRunSummary(
        scoring_date=scoring_date,
        run_id=run_id,
        model_version=str(model_version),
        rows=tally.rows,
        tiers={t: int(tally.tiers.get(t, 0)) for t in TIERS},
        seconds={k: round(v, 3) for k, v in {**tally.seconds, **seconds}.items()},
        extract_path=str(path),
        new_leads=tally.new_leads,
    )
    log.info(
        "scored %d leads for %s with model version %s: %s",
        summary.rows,
        scoring_date,
        model_version,
        summary.tiers,
    )
    return summary
