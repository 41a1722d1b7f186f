"""Online testing: which model serves a lead, and the canary's automatic rollback.

Assignment is sticky: a lead's bucket is a hash of its lead_id in [0, 1), so the same lead
always gets the same variant (across requests, restarts and replicas) while the mode and share
stay the same.

- shadow: the champion serves every lead; the challenger scores the same rows, logged only.
- canary: leads with bucket < canary.share get the challenger, until `CanaryGuard` trips.
- ab: leads with bucket < ab.split get the challenger (B), the rest the champion (A).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from ml.config import CanarySettings, ServingSettings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def bucket(lead_id: str) -> float:
    """A lead's fixed position in [0, 1) (first 8 bytes of BLAKE2b of the id)."""
    digest = hashlib.blake2b(lead_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def challenger_share(serving: ServingSettings) -> float:
    """Share of leads the challenger serves in this mode (0 for off and shadow)."""
    if serving.mode == "canary":
        return serving.canary.share
    if serving.mode == "ab":
        return serving.ab.split
    return 0.0


def assign(lead_id: str, share: float) -> str:
    """The variant that serves this lead, for a challenger share."""
    return CHALLENGER if share > 0 and bucket(lead_id) < share else CHAMPION


def psi_bins(n_expected: int, n_actual: int, per_bin: int = 30, most: int = 10) -> int:
    """Deciles when the samples are large, fewer bins when they are small.

    PSI of two samples of one distribution is biased upwards by about
    (bins - 1) * (1/n_expected + 1/n_actual); with at least `per_bin` values per bin that noise
    stays well under the guard's threshold, so small canary windows do not trip on chance.
    """
    return int(np.clip(min(n_expected, n_actual) // per_bin, 3, most))


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected` over expected's deciles."""
    expected, actual = np.asarray(expected, float), np.asarray(actual, float)
    if len(expected) == 0 or len(actual) == 0:
        return 0.0
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    e = np.clip(e / e.sum(), 1e-4, None)
    a = np.clip(a / a.sum(), 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class GuardVerdict:
    tripped: bool
    reason: str | None
    error_rate: float
    p95_latency_ms: float
    score_psi: float
    requests: int


class CanaryGuard:
    """Watches the challenger's last `window` requests against thresholds; once tripped, the
    canary stays off for that challenger version (a new version re-arms it)."""

    def __init__(self, cfg: CanarySettings) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self.version: int | None = None
        self.tripped_reason: str | None = None
        self._challenger: deque[tuple[bool, float, float]] = deque(maxlen=cfg.window)
        self._champion_scores: deque[float] = deque(maxlen=cfg.window)

    def arm(self, version: int | None) -> None:
        """Start watching `version` (clears the windows if it is a new one)."""
        with self._lock:
            if version != self.version:
                self.version = version
                self.tripped_reason = None
                self._challenger.clear()
                self._champion_scores.clear()

    @property
    def tripped(self) -> bool:
        return self.tripped_reason is not None

    def record_champion(self, scores: np.ndarray) -> None:
        with self._lock:
            self._champion_scores.extend(float(s) for s in scores)

    def record_challenger(self, ok: bool, latency_ms: float, score: float | None) -> None:
        """One challenger request; may trip the guard."""
        with self._lock:
            self._challenger.append((ok, latency_ms, np.nan if score is None else score))
            if self.tripped_reason is None and len(self._challenger) >= self.cfg.min_requests:
                verdict = self._judge()
                if verdict.tripped:
                    self.tripped_reason = verdict.reason
                    log.warning("canary rollback of challenger v%s: %s", self.version,
                                verdict.reason)

    def verdict(self) -> GuardVerdict:
        with self._lock:
            return self._judge()

    def _judge(self) -> GuardVerdict:
        cfg = self.cfg
        window = np.array(list(self._challenger), dtype=float).reshape(-1, 3)
        n = len(window)
        if n == 0:
            return GuardVerdict(self.tripped_reason is not None, self.tripped_reason, 0, 0, 0, 0)
        error_rate = float(1 - window[:, 0].mean())
        p95 = float(np.percentile(window[:, 1], 95))
        scores = window[:, 2][~np.isnan(window[:, 2])]
        score_psi = (
            psi(np.array(self._champion_scores), scores,
                bins=psi_bins(len(self._champion_scores), len(scores)))
            if len(self._champion_scores) >= cfg.min_requests and len(scores) >= cfg.min_requests
            else 0.0
        )
        reason = self.tripped_reason
        if reason is None and n >= cfg.min_requests:
            if error_rate > cfg.max_error_rate:
                reason = f"error rate {error_rate:.3f} > {cfg.max_error_rate} over {n} requests"
            elif p95 > cfg.max_p95_latency_ms:
                reason = f"p95 latency {p95:.1f} ms > {cfg.max_p95_latency_ms} ms"
            elif score_psi > cfg.max_score_psi:
                reason = f"score PSI {score_psi:.3f} > {cfg.max_score_psi} against the champion"
        return GuardVerdict(reason is not None, reason, error_rate, p95, score_psi, n)
