"""The scoring path of the service: online features + request overrides → `score_frame`.

Requests are scored in micro-batches. A handler queues its rows and awaits a future; one task
on the event loop takes everything queued (up to `serving.micro_batch` rows), reads their
features in one online-store call and scores each variant's rows in one `score_frame` call (the
function batch scoring uses, so scores and reasons agree). Scoring one row or thirty costs
almost the same (pandas and XGBoost overheads are per call), so under load the cost per request
falls instead of requests queueing behind each other. At low load a batch is one request.

The work runs on the event-loop thread on purpose: it is sub-millisecond, a thread hop would
cost as much, and a single thread needs no locks around the online-store connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from ml.config import Settings
from ml.scoring import score_frame
from ml.serving.features import OnlineFeatureReader
from ml.serving.metrics import ServiceMetrics
from ml.serving.model_manager import LoadedModel, ModelManager
from ml.serving.prediction_log import PredictionLogWriter
from ml.serving.routing import CHALLENGER, CHAMPION, CanaryGuard, assign, challenger_share
from ml.serving.schemas import PredictRequest

log = logging.getLogger(__name__)


class ModelNotReady(Exception):
    """No champion is loaded yet (503)."""


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
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scoring")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def predict(self, rows: list[PredictRequest], endpoint: str) -> list[dict | None]:
        """Results in request order; None for an id-only lead the online store does not know.

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

    def _frame(self, rows: list[PredictRequest]) -> tuple[pd.DataFrame, list[dict], np.ndarray]:
        """The model input (online values, request fields winning), the per-row sources and
        whether each lead was found in the online store."""
        stored = self.reader.read([r.lead_id for r in rows])
        columns: dict[str, list[Any]] = {"lead_id": [r.lead_id for r in rows]}
        for name in self.feature_names:
            columns[name] = [None if s is None else s.get(name) for s in stored]
        sources = []
        for i, row in enumerate(rows):
            given = row.overrides()
            for name, value in given.items():
                if name in columns:
                    columns[name][i] = value
            found = stored[i] is not None
            from_store = [] if not found else [
                n for n in self.feature_names if n not in given and stored[i].get(n) is not None
            ]
            missing = [n for n in self.feature_names
                       if n not in given and (not found or stored[i].get(n) is None)]
            sources.append({"in_online_store": found, "from_request": sorted(given),
                            "from_online_store": from_store, "missing": missing})
        found = np.array([s is not None for s in stored], dtype=bool)
        return pd.DataFrame(columns), sources, found

    def _score(self, model: LoadedModel, frame: pd.DataFrame) -> tuple[pd.DataFrame, float]:
        started = time.perf_counter()
        out = score_frame(model.scorer, frame, self.settings)
        return out, (time.perf_counter() - started) * 1000

    def _process(self, jobs: list[_Job]) -> None:
        state = self.manager.state
        champion, challenger = state.champion, state.challenger
        if champion is None:
            for job in jobs:
                job.future.set_exception(ModelNotReady())
            return
        rows = [r for job in jobs for r in job.rows]
        self.metrics.micro_batch.observe(len(rows))
        frame, sources, found = self._frame(rows)
        scoreable = np.array([found[i] or bool(r.overrides()) for i, r in enumerate(rows)])

        mode = self.settings.serving.mode
        share = challenger_share(self.settings.serving) if challenger is not None else 0.0
        if mode == "canary" and (challenger is None or self.guard.tripped):
            share = 0.0
        variants = np.array([assign(r.lead_id, share) for r in rows], dtype=object)

        results: list[dict[str, Any] | None] = [None] * len(rows)
        log_rows: list[dict[str, Any]] = []
        served_by = np.full(len(rows), CHAMPION, dtype=object)
        timings = np.zeros(len(rows))

        guard_rows: list[tuple[bool, float, float | None]] = []
        challenger_idx = np.flatnonzero(scoreable & (variants == CHALLENGER))
        if len(challenger_idx):
            assert challenger is not None
            try:
                out, ms = self._score(challenger, frame.iloc[challenger_idx])
                self._fill(results, challenger_idx, out, challenger, CHALLENGER, sources)
                served_by[challenger_idx] = CHALLENGER
                timings[challenger_idx] = ms
                if mode == "canary":
                    guard_rows = [(True, ms, float(s)) for s in out["score"].to_numpy()]
            except Exception as exc:
                self.metrics.challenger_errors.inc(len(challenger_idx))
                log.warning("challenger v%s failed (%s); the champion answers",
                            challenger.version, exc)
                if mode == "canary":
                    guard_rows = [(False, 0.0, None)] * len(challenger_idx)
                variants[challenger_idx] = CHAMPION  # falls through to the champion below
        champion_idx = np.flatnonzero(scoreable & (served_by == CHAMPION))
        if len(champion_idx):
            out, ms = self._score(champion, frame.iloc[champion_idx])
            self._fill(results, champion_idx, out, champion, CHAMPION, sources)
            timings[champion_idx] = ms
            if mode == "canary" and challenger is not None:
                self.guard.record_champion(out["score"].to_numpy())
        for ok, ms, score in guard_rows:  # after the champion's scores of the same batch
            self.guard.record_challenger(ok, ms, score)

        now = time.perf_counter()
        offset = 0
        for job in jobs:
            part = results[offset:offset + len(job.rows)]
            latency_ms = (now - job.started) * 1000
            for k, res in enumerate(part):
                if res is not None:
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
                    self._shadow, jobs, challenger, frame.iloc[idx], idx, found, len(rows))
        self._log(log_rows)

    def _shadow(self, jobs: list[_Job], challenger: LoadedModel, frame: pd.DataFrame,
                idx: np.ndarray, found: np.ndarray, n_rows: int) -> None:
        job_of = np.repeat(np.arange(len(jobs)), [len(j.rows) for j in jobs])
        try:
            out, ms = self._score(challenger, frame)
        except Exception as exc:
            self.metrics.challenger_errors.inc(len(idx))
            log.warning("shadow challenger v%s failed: %s", challenger.version, exc)
            lead_ids = frame["lead_id"].tolist()
            rows = [self._error_row(jobs[job_of[i]], lead_ids[k], challenger, str(exc),
                                    bool(found[i])) for k, i in enumerate(idx)]
            self._log(rows)
            return
        rows = []
        for k, i in enumerate(idx):
            rec = out.iloc[k]
            res = {"lead_id": rec["lead_id"], "score": float(rec["score"]),
                   "probability": float(rec["probability"]), "tier": str(rec["tier"]),
                   "model_name": challenger.name, "model_version": str(challenger.version),
                   "variant": CHALLENGER}
            rows.append(self._log_row(jobs[job_of[i]], res, False, ms, bool(found[i])))
        self._log(rows)

    def _fill(self, results: list, idx: np.ndarray, out: pd.DataFrame, model: LoadedModel,
              variant: str, sources: list[dict]) -> None:
        lead_ids = out["lead_id"].tolist()
        scores = out["score"].tolist()
        probs = out["probability"].tolist()
        tiers = out["tier"].tolist()
        r_for = out["reasons_for"].tolist()
        r_against = out["reasons_against"].tolist()
        version = str(model.version)
        for k, i in enumerate(idx):
            results[i] = {
                "lead_id": lead_ids[k], "score": scores[k], "probability": probs[k],
                "tier": tiers[k], "reasons": json.loads(r_for[k]),
                "reasons_against": json.loads(r_against[k]), "model_name": model.name,
                "model_version": version, "variant": variant, "feature_sources": sources[i],
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
