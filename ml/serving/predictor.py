"""The scoring path of the service: online features + request overrides → `score_records`.

Requests are scored in micro-batches. A handler queues its rows and awaits a future; one task
on the event loop takes everything queued (up to `serving.micro_batch` rows), reads their
features in one online-store call and scores each variant's rows in one `score_records` call
(`score_frame` without the DataFrame: the same scoring core as batch, so scores and reasons
agree). Scoring one row or thirty costs almost the same (the overheads are per call), so under
load the cost per request falls instead of requests queueing behind each other. At low load a
batch is one request.

Where a request's time went (profiled with cProfile and timing probes against the demo's
stores): not the parts (online read, one-row prediction, contributions) but pandas around
them: a one-row DataFrame, then one Series per feature column to build the model's matrix and
per reason to phrase it, about fifty pandas objects per request, ~5 ms. `score_records` builds
the matrix and the phrases from the Python values directly.

The work runs on the event-loop thread on purpose: it is sub-millisecond, a thread hop would
cost as much, and a single thread needs no locks around the online-store connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xgboost as xgb

from ml.config import Settings
from ml.request import request_records, unknown_categories
from ml.scoring import score_records
from ml.serving.features import OnlineFeatureReader
from ml.serving.metrics import ServiceMetrics
from ml.serving.model_manager import LoadedModel, ModelManager
from ml.serving.prediction_log import PredictionLogWriter
from ml.serving.routing import CHALLENGER, CHAMPION, CanaryGuard, assign, challenger_share
from ml.serving.schemas import PredictRequest

log = logging.getLogger(__name__)


STORE_DOWN_WARNING = "online store unavailable: scored from the request only"


class ModelNotReady(Exception):
    """No champion is loaded yet (503)."""


class Unscored(enum.Enum):
    """Why a lead has no score: an id-only lead the online store does not know (404), or an
    id-only lead while the store cannot be read (503: nothing to score it from)."""

    NOT_FOUND = "not_found"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass
class _Job:
    rows: list[PredictRequest]
    endpoint: str
    future: asyncio.Future[list[dict[str, Any] | None]]
    started: float = field(default_factory=time.perf_counter)
    logged_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Predictor:
    """Scores requests; owns the micro-batch queue and the shadow/canary/A-B routing."""

    def __init__(
        self,
        settings: Settings,
        reader: OnlineFeatureReader,
        manager: ModelManager,
        writer: PredictionLogWriter | None,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.manager = manager
        self.writer = writer
        self.metrics = metrics
        self.guard = CanaryGuard(settings.serving.canary)
        self.feature_names = reader.feature_names
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ queue

    def start(self) -> None:
        """Start the scoring task on the running loop (call from the loop's thread)."""
        # XGBoost builds each DMatrix with every core by default (its global `nthread` 0):
        # OpenMP threads for a one-row matrix cost ~5 ms of start-up and barrier waiting, far
        # more under CPU contention. The setting is per thread; scoring runs on this one.
        xgb.set_config(nthread=1)
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scoring")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def predict(self, rows: list[PredictRequest], endpoint: str
                      ) -> list[dict[str, Any] | Unscored]:
        """Results in request order: a response dict, or why the lead was not scored.

        Raises:
            ModelNotReady: no champion is loaded.
        """
        if not self.manager.ready:
            raise ModelNotReady
        assert self._queue is not None, "Predictor.start() was not called"
        job = _Job(rows, endpoint, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _run(self) -> None:
        assert self._queue is not None
        limit = self.settings.serving.micro_batch
        while True:
            jobs = [await self._queue.get()]
            n = len(jobs[0].rows)
            while n < limit and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                n += len(job.rows)
            try:
                self._process(jobs)
            except Exception as exc:  # never leave a handler waiting
                log.exception("scoring failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            # Let the handlers answer before anything else (shadow scoring is queued behind).
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ scoring

    def _full_records(self, rows: list[PredictRequest], given: list[dict[str, Any]],
                      stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The full model's input per lead: the stored features, request fields winning."""
        names = self.feature_names
        return [{"lead_id": row.lead_id, **{n: g[n] if n in g else s.get(n) for n in names}}
                for row, g, s in zip(rows, given, stored, strict=True)]

    def _score_from_request(self, model: LoadedModel, rows: list[PredictRequest],
                            given: list[dict[str, Any]]
                            ) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """Score leads from their request fields alone: (per lead the SCORE_COLUMNS of
        `score_records`, per lead the features assumed because the lead is new).

        The one path for leads the online store does not know and for every lead while the
        store cannot be read: the version's request model (trained on what a request provides,
        see ml.request). A version registered without one falls back to the full model on the
        request's fields, every other feature missing (and never quoted as a reason).
        """
        scorer = model.scorer.request_scorer
        if scorer is None:
            records = [{"lead_id": r.lead_id, **{n: g.get(n) for n in self.feature_names}}
                       for r, g in zip(rows, given, strict=True)]
            return score_records(model.scorer, records, self.settings), [[] for _ in rows]
        records, assumed = request_records(
            scorer, [{"lead_id": r.lead_id, **g} for r, g in zip(rows, given, strict=True)])
        return score_records(scorer, records, self.settings), assumed

    def _score_rows(self, model: LoadedModel, idx: np.ndarray, rows: list[PredictRequest],
                    given: list[dict[str, Any]], stored: list[dict[str, Any] | None]
                    ) -> tuple[dict[int, dict[str, Any]], float]:
        """Score rows `idx` with `model`: stored leads by the full path, the others from their
        request. Returns {row: scored fields} and the milliseconds it took."""
        started = time.perf_counter()
        full = [int(i) for i in idx if stored[i] is not None]
        request = [int(i) for i in idx if stored[i] is None]
        scored: dict[int, dict[str, Any]] = {}
        for part, scored_by in ((full, "full"), (request, "request")):
            if not part:
                continue
            if scored_by == "full":
                scorer = model.scorer
                out = score_records(scorer, self._full_records(
                    [rows[i] for i in part], [given[i] for i in part],
                    [stored[i] for i in part]), self.settings)  # type: ignore[misc]
                assumed: list[list[str]] = [[] for _ in part]
            else:
                scorer = model.scorer.request_scorer or model.scorer
                out, assumed = self._score_from_request(model, [rows[i] for i in part],
                                                        [given[i] for i in part])
            for i, rec, guessed in zip(part, out, assumed, strict=True):
                scored[i] = {**rec, "scored_by": scored_by, "assumed": guessed,
                             "features": scorer.feature_names,
                             "unknown": unknown_categories(scorer, given[i])}
        return scored, (time.perf_counter() - started) * 1000

    @staticmethod
    def _sources(given: dict[str, Any], stored: dict[str, Any] | None, features: list[str],
                 assumed: list[str]) -> dict[str, Any]:
        """Which of the answering model's features were given, read from the store, assumed
        (a new lead's empty activity) or missing."""
        if stored is None:
            return {"in_online_store": False, "from_request": sorted(given),
                    "from_online_store": [], "assumed": list(assumed),
                    "missing": [n for n in features if n not in given and n not in assumed]}
        return {
            "in_online_store": True, "from_request": sorted(given),
            "from_online_store": [n for n in features
                                  if n not in given and stored.get(n) is not None],
            "assumed": [],
            "missing": [n for n in features if n not in given and stored.get(n) is None],
        }

    def _process(self, jobs: list[_Job]) -> None:
        state = self.manager.state
        champion, challenger = state.champion, state.challenger
        if champion is None:
            for job in jobs:
                job.future.set_exception(ModelNotReady())
            return
        rows = [r for job in jobs for r in job.rows]
        self.metrics.micro_batch.observe(len(rows))
        given = [r.overrides() for r in rows]
        read = self.reader.try_read([r.lead_id for r in rows])
        store_down = read is None
        self.metrics.online_store_degraded.set(int(store_down))
        stored: list[dict[str, Any] | None] = [None] * len(rows) if read is None else read
        found = np.array([s is not None for s in stored], dtype=bool)
        scoreable = found | np.array([bool(g) for g in given], dtype=bool)
        unscored = Unscored.STORE_UNAVAILABLE if store_down else Unscored.NOT_FOUND
        warnings = [STORE_DOWN_WARNING] if store_down else []

        mode = self.settings.serving.mode
        share = challenger_share(self.settings.serving) if challenger is not None else 0.0
        if mode == "canary" and (challenger is None or self.guard.tripped):
            share = 0.0
        variants = np.array([assign(r.lead_id, share) for r in rows], dtype=object)

        results: list[dict[str, Any] | Unscored] = [unscored] * len(rows)
        served_by = np.full(len(rows), CHAMPION, dtype=object)

        guard_rows: list[tuple[bool, float, float | None]] = []
        challenger_idx = np.flatnonzero(scoreable & (variants == CHALLENGER))
        if len(challenger_idx):
            assert challenger is not None
            try:
                scored, ms = self._score_rows(challenger, challenger_idx, rows, given, stored)
                self._fill(results, scored, challenger, CHALLENGER, given, stored, warnings)
                served_by[challenger_idx] = CHALLENGER
                if mode == "canary":
                    guard_rows = [(True, ms, float(r["score"])) for r in scored.values()]
            except Exception as exc:
                self.metrics.challenger_errors.inc(len(challenger_idx))
                log.warning("challenger v%s failed (%s); the champion answers",
                            challenger.version, exc)
                if mode == "canary":
                    guard_rows = [(False, 0.0, None)] * len(challenger_idx)
        champion_idx = np.flatnonzero(scoreable & (served_by == CHAMPION))
        if len(champion_idx):
            scored, ms = self._score_rows(champion, champion_idx, rows, given, stored)
            self._fill(results, scored, champion, CHAMPION, given, stored, warnings)
            if mode == "canary" and challenger is not None:
                self.guard.record_champion(np.array([r["score"] for r in scored.values()]))
        for ok, ms, score in guard_rows:  # after the champion's scores of the same batch
            self.guard.record_challenger(ok, ms, score)

        now = time.perf_counter()
        log_rows: list[dict[str, Any]] = []
        offset = 0
        for job in jobs:
            part = results[offset:offset + len(job.rows)]
            latency_ms = (now - job.started) * 1000
            for k, res in enumerate(part):
                if isinstance(res, dict):
                    self.metrics.scored_by.labels(res["scored_by"]).inc()
                    log_rows.append(self._log_row(job, res, True, latency_ms,
                                                  bool(found[offset + k])))
            offset += len(job.rows)
            if not job.future.done():
                job.future.set_result(part)

        if mode == "shadow" and challenger is not None:
            idx = np.flatnonzero(scoreable)
            if len(idx):
                # After the answers: the handlers resume first, then this runs.
                asyncio.get_running_loop().call_soon(
                    self._shadow, jobs, challenger, idx, rows, given, stored, found)
        self._log(log_rows)

    def _shadow(self, jobs: list[_Job], challenger: LoadedModel, idx: np.ndarray,
                rows: list[PredictRequest], given: list[dict[str, Any]],
                stored: list[dict[str, Any] | None], found: np.ndarray) -> None:
        job_of = np.repeat(np.arange(len(jobs)), [len(j.rows) for j in jobs])
        try:
            scored, ms = self._score_rows(challenger, idx, rows, given, stored)
        except Exception as exc:
            self.metrics.challenger_errors.inc(len(idx))
            log.warning("shadow challenger v%s failed: %s", challenger.version, exc)
            log_rows = [self._error_row(jobs[job_of[i]], rows[i].lead_id, challenger,
                                        str(exc), bool(found[i])) for i in idx]
            self._log(log_rows)
            return
        log_rows = []
        for i, rec in scored.items():
            res = {"lead_id": rec["lead_id"], "score": float(rec["score"]),
                   "probability": float(rec["probability"]), "tier": str(rec["tier"]),
                   "model_name": challenger.name, "model_version": str(challenger.version),
                   "variant": CHALLENGER}
            log_rows.append(self._log_row(jobs[job_of[i]], res, False, ms, bool(found[i])))
        self._log(log_rows)

    def _fill(self, results: list, scored: dict[int, dict[str, Any]], model: LoadedModel,
              variant: str, given: list[dict[str, Any]], stored: list[dict[str, Any] | None],
              warnings: list[str]) -> None:
        version = str(model.version)
        for i, rec in scored.items():
            results[i] = {
                "lead_id": rec["lead_id"], "score": rec["score"],
                "probability": rec["probability"], "tier": rec["tier"],
                "reasons": json.loads(rec["reasons_for"]),
                "reasons_against": json.loads(rec["reasons_against"]),
                "model_name": model.name, "model_version": version, "variant": variant,
                "feature_sources": self._sources(given[i], stored[i], rec["features"],
                                                 rec["assumed"]),
                "scored_by": rec["scored_by"],
                "warnings": (list(warnings) if rec["scored_by"] == "request" else [])
                + rec["unknown"],
            }

    def _log_row(self, job: _Job, res: dict, served: bool, latency_ms: float,
                 in_store: bool) -> dict[str, Any]:
        self.metrics.predictions.labels(res["variant"], res["model_version"], str(served)).inc()
        return {
            "logged_at": job.logged_at, "request_id": job.request_id, "endpoint": job.endpoint,
            "lead_id": res["lead_id"], "mode": self.settings.serving.mode,
            "variant": res["variant"], "served": served, "model_name": res["model_name"],
            "model_version": res["model_version"], "probability": res["probability"],
            "score": res["score"], "tier": res["tier"], "latency_ms": round(latency_ms, 3),
            "in_online_store": in_store, "status": "ok", "error": None,
        }

    def _error_row(self, job: _Job, lead_id: str, model: LoadedModel, error: str,
                   in_store: bool) -> dict:
        return {
            "logged_at": job.logged_at, "request_id": job.request_id, "endpoint": job.endpoint,
            "lead_id": lead_id, "mode": self.settings.serving.mode, "variant": CHALLENGER,
            "served": False, "model_name": model.name, "model_version": str(model.version),
            "probability": None, "score": None, "tier": None, "latency_ms": 0.0,
            "in_online_store": in_store, "status": "error", "error": error[:500],
        }

    def _log(self, rows: list[dict[str, Any]]) -> None:
        if rows and self.writer is not None:
            self.writer.submit(rows)
