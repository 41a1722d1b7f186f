"""Routing and delivery: each alert goes to the channels its severity is routed to
(`alerting.routes`) and always to the JSON-lines file.

- Retries: a retryable failure is tried again up to `retries` times, waiting
  `backoff_s · 2^(k−1)` before retry k; each attempt has the channel's `timeout_s`.
- A channel that fails never stops the run: the failure is logged (warning), written to the
  JSON-lines file and to the `alert_log` table, and returned as an `AlertResult`.
- Cool-down: an alert whose key was delivered to a channel within `cooldown_minutes` is not
  re-sent there (status `suppressed`). The `alert_log` table in the monitoring store is the
  memory, so the cool-down holds across processes.
- A channel without its URL/key/recipients is `skipped` (logged at info level), not failed.
- Secrets never leave: every error text is scrubbed of the configured secret values before it
  is logged, written to the JSON-lines file or recorded (a sender's message, or a library's,
  might quote a URL or a server's echo).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ml.alerts.rules import Alert
from ml.alerts.senders import SENDERS, NotConfigured, SendError
from ml.config import Settings
from ml.monitoring.store import alert_log, monitoring_engine

log = logging.getLogger(__name__)

JSONL = "jsonl"


@dataclass(frozen=True)
class AlertResult:
    """What happened to one alert on one channel."""

    key: str
    rule: str
    severity: str
    channel: str
    status: str  # sent | failed | suppressed | skipped
    attempts: int = 0
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


REDACTED = "[secret]"


def _secret_fragments(settings: Settings) -> list[str]:
    """The configured secret values, and for a URL also its path, query and password: a
    server's error answer may echo the path it was called on (for Slack, the secret part)."""
    fragments = []
    for name in settings.alerting.secret_env_names():
        value = settings.secret(name)
        if not value:
            continue
        fragments.append(value)
        parts = urllib.parse.urlsplit(value)
        if parts.scheme and parts.netloc:
            fragments += [parts.path, parts.query, parts.password or ""]
    # longest first, so a whole URL is replaced before its path; 1-3 characters (or a bare
    # "/") would blank out ordinary text
    return sorted({f for f in fragments if len(f) >= 4}, key=len, reverse=True)


def redact(text: str | None, settings: Settings) -> str | None:
    """`text` with every configured secret (alerting.channels.*_env) replaced."""
    if not text:
        return text
    for fragment in _secret_fragments(settings):
        text = text.replace(fragment, REDACTED)
    return text


def _deliver(
    alert: Alert, channel: str, settings: Settings, sleep: Callable[[float], None]
) -> AlertResult:
    cfg = getattr(settings.alerting.channels, channel)
    sender = SENDERS[channel]
    started = time.perf_counter()
    attempts, error = 0, None
    base = dict(key=alert.key, rule=alert.rule, severity=alert.severity, channel=channel)
    if not cfg.enabled:
        return AlertResult(**base, status="skipped", error="disabled in settings")
    for attempt in range(cfg.retries + 1):
        if attempt:
            sleep(cfg.backoff_s * 2 ** (attempt - 1))
        attempts += 1
        try:
            sender(alert, settings)
            return AlertResult(
                **base, status="sent", attempts=attempts, seconds=time.perf_counter() - started
            )
        except NotConfigured as exc:
            return AlertResult(**base, status="skipped", error=redact(str(exc), settings))
        except SendError as exc:
            error = redact(str(exc), settings)
            log.info("alert %s via %s: attempt %d failed: %s", alert.key, channel, attempts, error)
            if not exc.retryable:
                break
        except Exception as exc:  # noqa: BLE001 - a broken channel must never stop the run
            error = redact(f"{type(exc).__name__}: {exc}", settings)
            log.info("alert %s via %s: attempt %d failed: %s", alert.key, channel, attempts, error)
    return AlertResult(
        **base,
        status="failed",
        attempts=attempts,
        error=error,
        seconds=time.perf_counter() - started,
    )


def _recently_sent(settings: Settings, keys: Iterable[str]) -> set[tuple[str, str]]:
    """(key, channel) pairs delivered within the cool-down."""
    minutes = settings.alerting.cooldown_minutes
    keys = list(keys)
    if minutes <= 0 or not keys:
        return set()
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=minutes)
    engine = monitoring_engine(settings)
    query = sa.select(alert_log.c.alert_key, alert_log.c.channel).where(
        alert_log.c.alert_key.in_(keys),
        alert_log.c.status == "sent",
        alert_log.c.sent_at >= since,
    )
    with engine.connect() as conn:
        rows = {(r[0], r[1]) for r in conn.execute(query)}
    engine.dispose()
    return rows


def _write_jsonl(settings: Settings, alert: Alert, results: list[AlertResult]) -> AlertResult:
    path = settings.alerting.channels.jsonl.path
    base = dict(key=alert.key, rule=alert.rule, severity=alert.severity, channel=JSONL)
    record = {**alert.to_dict(), "deliveries": [r.to_dict() for r in results]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    except OSError as exc:
        log.warning("alert %s: cannot append to %s: %s", alert.key, path, exc)
        return AlertResult(**base, status="failed", attempts=1, error=str(exc))
    return AlertResult(**base, status="sent", attempts=1)


def _record(settings: Settings, alert: Alert, results: list[AlertResult]) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "alert_key": alert.key,
            "rule": alert.rule,
            "severity": alert.severity,
            "channel": r.channel,
            "status": r.status,
            "attempts": r.attempts,
            "error": (r.error or "")[:1000] or None,
            "title": alert.title[:500],
            "sent_at": now,
        }
        for r in results
    ]
    engine = monitoring_engine(settings)
    with engine.begin() as conn:
        conn.execute(alert_log.insert(), rows)
    engine.dispose()


def dispatch(
    settings: Settings,
    alerts: Iterable[Alert],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[AlertResult]:
    """Send each alert to its routed channels (with retries and the cool-down) and to the
    JSON-lines file; never raises for a channel's failure. Returns one result per channel."""
    alerts = list(alerts)
    recent = _recently_sent(settings, {a.key for a in alerts})
    results: list[AlertResult] = []
    for alert in alerts:
        mine: list[AlertResult] = []
        for channel in dict.fromkeys(settings.alerting.routes.get(alert.severity, [])):
            if (alert.key, channel) in recent:
                mine.append(
                    AlertResult(
                        alert.key,
                        alert.rule,
                        alert.severity,
                        channel,
                        "suppressed",
                        error=f"sent within the last {settings.alerting.cooldown_minutes:g} min",
                    )
                )
                continue
            result = _deliver(alert, channel, settings, sleep)
            if result.status == "failed":
                log.warning(
                    "alert %s (%s) not delivered via %s after %d attempt(s): %s",
                    alert.key,
                    alert.severity,
                    channel,
                    result.attempts,
                    result.error,
                )
            elif result.status == "skipped":
                log.info("alert %s: channel %s skipped: %s", alert.key, channel, result.error)
            mine.append(result)
        mine.append(_write_jsonl(settings, alert, mine))
        try:
            _record(settings, alert, mine)
        except Exception as exc:  # noqa: BLE001 - the store being down must not stop the run
            log.warning(
                "alert %s: cannot record deliveries in the monitoring store: %s", alert.key, exc
            )
        results += mine
    return results
