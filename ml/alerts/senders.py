"""Senders: one function per channel that delivers one alert once, or raises `SendError`.

Payloads:
- Slack incoming webhook: `{"text": ..., "blocks": [...]}` (mrkdwn header, summary, fields);
- generic webhook: the alert as JSON (`Alert.to_dict()`), POST with Content-Type JSON;
- PagerDuty Events API v2: `{"routing_key", "event_action": "trigger", "dedup_key": alert.key,
  "payload": {"summary", "source", "severity", "timestamp", "component", "class",
  "custom_details"}}`, accepted with HTTP 202;
- email: a plain-text message over SMTP. STARTTLS is on by default and the server's certificate
  is verified (against `ca_file` or the system's CAs); a server that does not offer STARTTLS or
  whose certificate does not verify gets nothing, least of all the login. Only an explicit
  `starttls: false` sends in the clear, with a warning each time it logs in that way.
Retrying, timeouts per attempt and the cool-down are the caller's (`ml.alerts.channels`).

Secrets (webhook URLs, the routing key, SMTP credentials) never enter an error message: hosts are
named by host and port only, and a URL that does not parse is reported without its text.
"""

from __future__ import annotations

import http.client
import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from typing import Any

from ml.alerts.rules import Alert
from ml.config import EmailChannel, Settings

log = logging.getLogger(__name__)

SOURCE = "lead-scoring"
SLACK_EMOJI = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
}


class SendError(Exception):
    """A delivery that failed; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class NotConfigured(Exception):
    """The channel lacks a URL, key or recipients: it is skipped, not failed."""


def post_json(url: str, payload: dict[str, Any], timeout_s: float, ok: tuple[int, ...] = ()) -> int:
    """POST JSON; returns the status. 5xx, 429 and network errors are retryable, other 4xx not."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        # urllib's own message would quote the URL, which may be the secret itself
        raise SendError(f"not an http(s) URL (scheme {scheme[:10]!r})", retryable=False)
    try:
        request = urllib.request.Request(
            url,
            data=json.dumps(payload, default=str).encode(),
            headers={"Content-Type": "application/json", "User-Agent": SOURCE},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode(errors="replace")
        raise SendError(
            f"HTTP {exc.code} from {_host(url)}: {body}",
            retryable=exc.code >= 500 or exc.code == 429,
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"cannot reach {_host(url)}: {reason}") from None
    except http.client.HTTPException as exc:
        raise SendError(f"bad HTTP answer from {_host(url)}: {type(exc).__name__}") from None
    except ValueError:  # a malformed URL (bad port, control characters): never quote it
        raise SendError(f"malformed URL for {_host(url)}", retryable=False) from None
    if ok and status not in ok:
        raise SendError(f"HTTP {status} from {_host(url)}, expected {ok}")
    return status


def _host(url: str) -> str:
    """Host and port of a URL, for messages. Never the full URL (for Slack it is the secret),
    nor the netloc (it may hold user:password@)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "?"
    return f"{host}:{port}" if port else host


def _details_lines(alert: Alert) -> list[str]:
    lines = [f"{k}: {v}" for k, v in alert.details.items() if not isinstance(v, (list, dict))]
    lines += [f"{k}: {v}" for k, v in alert.links.items()]
    return lines


def slack_payload(alert: Alert) -> dict[str, Any]:
    head = f"{SLACK_EMOJI.get(alert.severity, '')} [{alert.severity.upper()}] {alert.title}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*\n{alert.summary}"}}
    ]
    fields = [{"type": "mrkdwn", "text": line} for line in _details_lines(alert)[:10]]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{SOURCE} · {alert.key}"}]}
    )
    return {"text": f"{head}: {alert.summary}", "blocks": blocks}


def pagerduty_payload(alert: Alert, routing_key: str) -> dict[str, Any]:
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.key[:255],
        "payload": {
            "summary": f"{alert.title}: {alert.summary}"[:1024],
            "source": SOURCE,
            "severity": alert.severity
            if alert.severity in ("info", "warning", "critical")
            else "error",
            "timestamp": alert.created_at,
            "component": "lead-scoring-model",
            "class": alert.rule,
            "custom_details": {**alert.details, **alert.links},
        },
    }


def send_slack(alert: Alert, settings: Settings) -> None:
    cfg = settings.alerting.channels.slack
    url = settings.secret(cfg.webhook_url_env)
    if not url:
        raise NotConfigured(f"${cfg.webhook_url_env} is not set")
    post_json(url, slack_payload(alert), cfg.timeout_s)


def send_webhook(alert: Alert, settings: Settings) -> None:
    cfg = settings.alerting.channels.webhook
    url = settings.secret(cfg.url_env)
    if not url:
        raise NotConfigured(f"${cfg.url_env} is not set")
    post_json(url, alert.to_dict(), cfg.timeout_s)


def send_pagerduty(alert: Alert, settings: Settings) -> None:
    cfg = settings.alerting.channels.pagerduty
    key = settings.secret(cfg.routing_key_env)
    if not key:
        raise NotConfigured(f"${cfg.routing_key_env} is not set")
    post_json(cfg.events_url, pagerduty_payload(alert, key), cfg.timeout_s, ok=(200, 201, 202))


def email_message(alert: Alert, cfg: EmailChannel) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[{SOURCE}][{alert.severity.upper()}] {alert.title}"
    message["From"] = cfg.sender
    message["To"] = ", ".join(cfg.recipients)
    body = [
        alert.summary,
        "",
        *_details_lines(alert),
        "",
        f"alert key: {alert.key}",
        f"raised at: {alert.created_at}",
    ]
    message.set_content("\n".join(body))
    return message


def send_email(alert: Alert, settings: Settings) -> None:
    cfg = settings.alerting.channels.email
    if not cfg.recipients:
        raise NotConfigured("alerting.channels.email.recipients is empty")
    user, password = settings.secret(cfg.username_env), settings.secret(cfg.password_env)
    where = f"{cfg.smtp_host}:{cfg.smtp_port}"
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
            if cfg.starttls:
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise SendError(
                        f"SMTP {where} does not offer STARTTLS: nothing sent (set "
                        "alerting.channels.email.starttls: false only for a relay you trust)",
                        retryable=False,
                    )
                context = ssl.create_default_context(
                    cafile=str(cfg.ca_file) if cfg.ca_file else None
                )
                smtp.starttls(context=context)
            elif user and password:
                log.warning(
                    "SMTP login to %s over a plain connection: the credentials travel "
                    "unencrypted (alerting.channels.email.starttls is false)",
                    where,
                )
            if user and password:
                smtp.login(user, password)
            smtp.send_message(email_message(alert, cfg))
    except smtplib.SMTPResponseException as exc:
        raise SendError(
            f"SMTP {exc.smtp_code} from {where}",
            retryable=exc.smtp_code >= 400 and exc.smtp_code < 500,
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise SendError(
            f"SMTP {where}: TLS certificate not trusted ({exc.verify_message}); nothing sent "
            "(alerting.channels.email.ca_file names a CA bundle for a private CA)",
            retryable=False,
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP {where}: {type(exc).__name__}: {exc}") from None


SENDERS = {
    "slack": send_slack,
    "webhook": send_webhook,
    "pagerduty": send_pagerduty,
    "email": send_email,
}
