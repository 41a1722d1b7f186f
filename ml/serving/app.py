"""The FastAPI app: /predict, /predict/batch, /health, /ready, /model, /metrics, /docs.

`create_app(settings)` wires the parts: the online-feature reader (Feast online store, resolved
once), the model manager (registry aliases, hot reload), the predictor (micro-batched scoring
with shadow / canary / A-B routing) and the prediction-log writer. Errors a client can cause are
answered with 404/422/503 and a message; anything else is logged and answered with a plain 500
that carries no traceback. No response body carries an internal path, URL or exception text:
failures are logged server-side and answered in fixed words.

A well-formed POST /predict skips FastAPI's routing: `_Service.__call__` reads the body, checks
the API key when keys are configured, validates the payload as the route would (JSON, then
`PredictRequest`) and awaits the route's own code (`answer`). Anything else, or a request that
fails any of these checks, goes through FastAPI with its body replayed, so errors (401, 422,
500) are answered by the same handlers as always. Profiled, FastAPI's middleware, routing and
dependency solving were about a quarter of a request's CPU (~0.3 ms) for what these few lines do.

The service survives its dependencies: with the registry unreadable it keeps the loaded models
(`/ready` 200 "degraded", `lead_scoring_registry_degraded` 1); with the online store unreadable
it scores leads from their request fields (`scored_by: request`, a warning in the response) and
answers 503 only for id-only leads, which then have nothing to be scored from.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from ml.config import Settings
from ml.serving.auth import api_key_check, api_key_dependency
from ml.serving.features import OnlineFeatureReader
from ml.serving.metrics import ServiceMetrics
from ml.serving.model_manager import Loader, ModelManager, ModelState
from ml.serving.prediction_log import PredictionLogWriter
from ml.serving.predictor import ModelNotReady, Predictor, Unscored
from ml.serving.routing import challenger_share
from ml.serving.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    ModelsResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
)

log = logging.getLogger(__name__)

NOT_READY = "no model is loaded yet; the service retries the registry every poll interval"
STORE_UNAVAILABLE = ("the online store cannot be read now and the request has no fields to "
                     "score from; retry, or send the lead's fields (lead_source, industry, ...)")
STORE_DEGRADED = "the online store cannot be read: leads are scored from the request only"


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


DIRECT_BODY_LIMIT = 64 * 1024  # a /predict body above this goes through FastAPI


class _Service(FastAPI):
    """The FastAPI app with a direct path for a well-formed POST /predict (module docstring)."""

    direct: Callable[[Scope, bytes, Send], Awaitable[bool]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.direct is None or scope["type"] != "http" or scope["path"] != "/predict"
                or scope["method"] != "POST"):
            return await super().__call__(scope, receive, send)
        chunks: list[bytes] = []
        size, more = 0, True
        while more and size <= DIRECT_BODY_LIMIT:
            message = await receive()
            if message["type"] != "http.request":  # the client left: FastAPI sees it too
                return await super().__call__(scope, _replay(chunks, receive, message), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        if not more and await self.direct(scope, b"".join(chunks), send):
            return None
        return await super().__call__(scope, _replay(chunks, receive, None, more), send)


def _replay(chunks: list[bytes], receive: Receive, last: Message | None = None,
            more: bool = False) -> Receive:
    """`receive` that first gives back what was read already."""
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks),
                               "more_body": more}]
    if last is not None:
        pending.append(last)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def create_app(settings: Settings, *, loader: Loader | None = None,
               alias_lookup: Any | None = None, log_predictions: bool = True) -> FastAPI:
    """The service for `settings`. `loader` / `alias_lookup` replace the registry calls
    (tests); `log_predictions=False` turns the prediction log off."""
    metrics = ServiceMetrics()
    kwargs: dict[str, Any] = {}
    if loader is not None:
        kwargs["loader"] = loader
    if alias_lookup is not None:
        kwargs["alias_lookup"] = alias_lookup
    manager = ModelManager(settings, **kwargs)
    serving = settings.serving

    def on_poll(state: ModelState) -> None:
        metrics.registry_degraded.set(int(state.degraded))
        if state.degraded:
            metrics.registry_poll_failures.inc()

    manager.on_poll = on_poll
    seen_store_failures = [0]  # the reader's failed reads already counted in the metric

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reader = OnlineFeatureReader(settings)
        writer = None
        if log_predictions:
            writer = PredictionLogWriter(serving.prediction_log_url, serving.log_queue_size,
                                         serving.log_flush_seconds)
            writer.start()
        predictor = Predictor(settings, reader, manager, writer, metrics)

        def on_swap(state: ModelState) -> None:
            predictor.guard.arm(state.challenger.version if state.challenger else None)
            for alias, model in (("champion", state.champion),
                                 ("challenger", state.challenger)):
                metrics.model_version.labels(alias).set(model.version if model else 0)

        manager.on_swap = on_swap
        predictor.start()
        manager.start()
        app.state.reader, app.state.writer, app.state.predictor = reader, writer, predictor
        try:
            yield
        finally:
            manager.stop()
            await predictor.stop()
            if writer is not None:
                writer.stop()

    # API keys (ml/serving/auth.py): with keys configured, every route but /health needs one,
    # the docs too (FastAPI's own docs routes bypass dependencies, so they are re-added below).
    auth = api_key_dependency(settings)
    docs = {} if auth is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = _Service(
        title="Lead scoring",
        summary="Real-time lead scores from the registered champion over the Feast online store.",
        version="1.0",
        lifespan=lifespan,
        responses={503: {"model": ErrorResponse, "description": "No model loaded yet."}},
        dependencies=[] if auth is None else [Depends(auth)],
        **docs,
    )
    if auth is not None:
        from fastapi.openapi.docs import get_swagger_ui_html
        from fastapi.responses import HTMLResponse

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi_schema() -> JSONResponse:
            return JSONResponse(app.openapi())

        @app.get("/docs", include_in_schema=False)
        async def swagger() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)
    app.state.manager, app.state.metrics, app.state.settings = manager, metrics, settings

    def record(endpoint: str, status: int, started: float, variant: str = "none",
               version: str = "none") -> None:
        metrics.requests.labels(endpoint, str(status), variant, version).inc()
        metrics.latency.labels(endpoint, variant, version).observe(time.perf_counter() - started)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            # A body that is not JSON is located by character position: name the body.
            {"field": "body", "message": f"not valid JSON at character {e['loc'][-1]}",
             "type": e["type"]} if e["type"] == "json_invalid" else
            {"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
             "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        metrics.errors.labels(request.url.path, "invalid_payload").inc()
        metrics.requests.labels(request.url.path, "422", "none", "none").inc()
        fields = ", ".join(sorted({e["field"] for e in errors}))
        return _error(422, f"invalid request: {fields}", errors=errors)

    @app.exception_handler(ModelNotReady)
    async def not_ready(request: Request, exc: ModelNotReady) -> JSONResponse:
        metrics.errors.labels(request.url.path, "not_ready").inc()
        metrics.requests.labels(request.url.path, "503", "none", "none").inc()
        return _error(503, NOT_READY)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        metrics.errors.labels(request.url.path, "internal").inc()
        metrics.requests.labels(request.url.path, "500", "none", "none").inc()
        return _error(500, "internal error; the service log has the details")

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={404: {"model": ErrorResponse, "description": "Unknown lead, id only."},
                   422: {"description": "Invalid payload; names the field."}},
        summary="Score one lead",
    )
    async def predict(body: PredictRequest) -> Any:
        """Score a lead by id (features from the Feast online store); fields given in the
        request win over stored ones. A lead the store does not know is scored from the
        request alone; an id-only request for it is a 404."""
        return await answer(body)

    async def answer(body: PredictRequest) -> Response:
        started = time.perf_counter()
        (result,) = await app.state.predictor.predict([body], "predict")
        if result is Unscored.STORE_UNAVAILABLE:
            metrics.errors.labels("/predict", "store_unavailable").inc()
            record("/predict", 503, started)
            return _error(503, STORE_UNAVAILABLE)
        if result is Unscored.NOT_FOUND:
            metrics.errors.labels("/predict", "unknown_lead").inc()
            record("/predict", 404, started)
            return _error(404, f"lead {body.lead_id!r} is not in the online store; send its "
                               "fields (lead_source, industry, ...) to score it from the request")
        record("/predict", 200, started, result["variant"], result["model_version"])
        # Serialized here: the predictor builds the response's exact fields (tests validate
        # them against PredictResponse), so FastAPI's per-request re-validation is skipped;
        # orjson writes the same JSON in a tenth of json.dumps' time.
        return Response(orjson.dumps(result), media_type="application/json")

    valid_key = api_key_check(settings)
    key_header = settings.serving.auth.header.lower().encode("latin-1")

    async def direct(scope: Scope, body: bytes, send: Send) -> bool:
        """Answer a POST /predict as the route would; False (nothing sent) when FastAPI must:
        a missing or unknown key, a body that is not a valid payload, no model yet."""
        headers = dict(scope["headers"])
        if headers.get(b"content-type") != b"application/json":
            return False
        if valid_key is not None:
            given = headers.get(key_header)
            if not valid_key(None if given is None else given.decode("latin-1")):
                return False
        try:
            request = PredictRequest.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # JSON or payload: FastAPI's 422 says which
            return False
        try:
            response = await answer(request)
        except ModelNotReady:
            return False
        except Exception as exc:
            response = await internal(Request(scope), exc)
        await response(scope, _no_body, send)
        return True

    app.direct = direct

    @app.post(
        "/predict/batch",
        response_model=BatchResponse,
        responses={422: {"description": "Invalid payload or more leads than the batch limit."}},
        summary="Score many leads",
    )
    async def predict_batch(body: BatchRequest) -> Any:
        """Score up to `serving.batch_limit` leads in one call; id-only leads the online store
        does not know are listed under `not_found`."""
        started = time.perf_counter()
        if len(body.leads) > serving.batch_limit:
            metrics.errors.labels("/predict/batch", "invalid_payload").inc()
            record("/predict/batch", 422, started)
            return _error(422, f"invalid request: leads has {len(body.leads)} items, more than "
                               f"the limit of {serving.batch_limit} (serving.batch_limit)",
                          errors=[{"field": "leads", "message": "too many leads",
                                   "type": "too_long"}])
        results = await app.state.predictor.predict(body.leads, "predict_batch")
        found = [r for r in results if isinstance(r, dict)]
        missing = [b.lead_id for b, r in zip(body.leads, results, strict=True)
                   if r is Unscored.NOT_FOUND]
        unavailable = [b.lead_id for b, r in zip(body.leads, results, strict=True)
                       if r is Unscored.STORE_UNAVAILABLE]
        variants = {r["variant"] for r in found}
        versions = {r["model_version"] for r in found}
        record("/predict/batch", 200, started,
               variants.pop() if len(variants) == 1 else ("mixed" if variants else "none"),
               versions.pop() if len(versions) == 1 else ("mixed" if versions else "none"))
        return {"predictions": found, "not_found": missing, "unavailable": unavailable}

    @app.get("/health", summary="Process alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Model loaded; degraded when a dependency is down",
             response_model=ReadyResponse, responses={503: {"model": ErrorResponse}})
    async def ready(request: Request) -> Any:
        """200 "ready"; 200 "degraded" (with reasons) while the service answers without a
        dependency (registry: the loaded models serve; online store: scored from requests);
        503 only when no model was ever loaded."""
        state = manager.state
        if state.champion is None:
            return _error(503, NOT_READY)
        reasons = []
        if state.degraded and state.last_error:
            reasons.append(state.last_error)
        if not request.app.state.reader.ping():
            reasons.append(STORE_DEGRADED)
        return {"status": "degraded" if reasons else "ready",
                "champion": str(state.champion.version), "reasons": reasons}

    @app.get("/model", response_model=ModelsResponse, summary="Models in use")
    async def model(request: Request) -> Any:
        state = manager.state

        def info(m: Any) -> dict[str, str] | None:
            return None if m is None else {"name": m.name, "version": str(m.version),
                                           "loaded_at": m.loaded_at.isoformat()}

        canary = None
        if serving.mode == "canary":
            v = request.app.state.predictor.guard.verdict()
            canary = {"rolled_back": v.tripped, "reason": v.reason, "requests": v.requests,
                      "error_rate": v.error_rate, "p95_latency_ms": v.p95_latency_ms,
                      "score_psi": v.score_psi}
        share = challenger_share(serving) if state.challenger is not None else 0.0
        if canary and canary["rolled_back"]:
            share = 0.0
        return {
            "mode": serving.mode, "champion": info(state.champion),
            "challenger": info(state.challenger), "challenger_share": share, "canary": canary,
            "checked_at": state.checked_at.isoformat() if state.checked_at else None,
            "last_error": state.last_error, "degraded": state.degraded, "swaps": state.swaps,
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus(request: Request) -> Response:
        reader = request.app.state.reader
        metrics.online_store_failures.inc(reader.failed_reads - seen_store_failures[0])
        seen_store_failures[0] = reader.failed_reads
        metrics.online_store_degraded.set(int(not reader.available))
        writer = request.app.state.writer
        if writer is not None:
            metrics.log_dropped.set(writer.dropped)
            metrics.log_pending.set(writer.pending)
        if serving.mode == "canary":
            metrics.canary_rolled_back.set(int(request.app.state.predictor.guard.tripped))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _no_body() -> Message:  # a response never reads the request again
    return {"type": "http.disconnect"}


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve with uvicorn (one process; the event loop is the scoring thread)."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host or settings.serving.host,
                port=port or settings.serving.port, log_level="info", access_log=False)
