"""Prometheus metrics of the service, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Milliseconds matter here: the target is p99 <= 5 ms.
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lead_scoring_requests", "HTTP requests by endpoint, status, variant and model version",
            ["endpoint", "status", "variant", "model_version"], registry=r)
        self.errors = Counter(
            "lead_scoring_errors", "Failed requests by endpoint and kind",
            ["endpoint", "kind"], registry=r)
        self.latency = Histogram(
            "lead_scoring_request_latency_seconds", "Time from request to response body",
            ["endpoint", "variant", "model_version"], buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter(
            "lead_scoring_predictions", "Predictions made (served or shadow)",
            ["variant", "model_version", "served"], registry=r)
        self.challenger_errors = Counter(
            "lead_scoring_challenger_errors", "Challenger failures (the champion answered)",
            registry=r)
        self.model_version = Gauge(
            "lead_scoring_model_version", "Version loaded per alias (0: none)", ["alias"],
            registry=r)
        self.canary_rolled_back = Gauge(
            "lead_scoring_canary_rolled_back", "1 when the canary guard sent traffic back",
            registry=r)
        self.log_dropped = Gauge(
            "lead_scoring_prediction_log_dropped", "Log rows dropped on a full queue", registry=r)
        self.log_pending = Gauge(
            "lead_scoring_prediction_log_pending", "Log rows waiting to be written", registry=r)
        self.registry_degraded = Gauge(
            "lead_scoring_registry_degraded",
            "1 while the last registry poll failed (the loaded models keep serving)", registry=r)
        self.registry_poll_failures = Counter(
            "lead_scoring_registry_poll_failures", "Registry polls that failed", registry=r)
        self.online_store_degraded = Gauge(
            "lead_scoring_online_store_degraded",
            "1 while the online store cannot be read (leads scored from the request)", registry=r)
        self.online_store_failures = Counter(
            "lead_scoring_online_store_failures", "Online-store reads that failed", registry=r)
        self.scored_by = Counter(
            "lead_scoring_scored_by", "Served predictions by the scorer's input: full (stored "
            "features) or request (the request's fields only)", ["scored_by"], registry=r)
        self.micro_batch = Histogram(
            "lead_scoring_micro_batch_rows", "Rows scored per scoring call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
