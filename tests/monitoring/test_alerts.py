"""Alert routing, payload shapes, retries, failures that do not stop the run, and the
cool-down, against local receivers (loopback only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml.alerts import dispatch, event_alert
from ml.alerts.senders import slack_payload
from ml.config import Settings, load_settings

ENV = {
    "LEAD_SCORING_SLACK_WEBHOOK_URL": "/slack",
    "LEAD_SCORING_ALERT_WEBHOOK_URL": "/hook",
    "LEAD_SCORING_PAGERDUTY_ROUTING_KEY": "rk-test-123",
}


def alert_settings(tmp_path: Path, http_url: str, smtp_port: int, **overrides) -> Settings:
    fast = {"timeout_s": 2, "backoff_s": 0.01, "retries": 2}
    tree = {
        "paths.data_dir": str(tmp_path),
        "alerting.channels.pagerduty.events_url": f"{http_url}/pagerduty",
        "alerting.channels.email.smtp_port": smtp_port,
        "alerting.channels.email.smtp_host": "127.0.0.1",
        "alerting.channels.email.recipients": ["sales-ops@example.test"],
        **{
            f"alerting.channels.{c}.{k}": v
            for c in ("slack", "webhook", "pagerduty", "email")
            for k, v in fast.items()
        },
        **overrides,
    }
    env = {k: (http_url + v if v.startswith("/") else v) for k, v in ENV.items()}
    return load_settings(overrides=tree, env=env)


def jsonl(settings: Settings) -> list[dict]:
    path = settings.alerting.channels.jsonl.path
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_routes_follow_the_original_severities(tmp_path, http_receiver, smtp_sink):
    s = alert_settings(tmp_path, http_receiver.url, smtp_sink.port)
    alerts = [
        event_alert(s, "promotion", "v3 promoted to @champion", key="promotion:v3"),
        event_alert(s, "data_drift", "PSI 0.31 on lead_source", key="data_drift:v3:lead_source"),
        event_alert(s, "nightly_run_failure", "nightly job failed", key="nightly:2026-10-01"),
    ]
    results = dispatch(s, alerts)
    sent = {(r.rule, r.channel) for r in results if r.status == "sent"}
    assert sent == {
        ("promotion", "slack"),
        ("promotion", "jsonl"),
        ("data_drift", "slack"),
        ("data_drift", "email"),
        ("data_drift", "jsonl"),
        ("nightly_run_failure", "pagerduty"),
        ("nightly_run_failure", "slack"),
        ("nightly_run_failure", "jsonl"),
    }
    assert [a.severity for a in alerts] == ["info", "warning", "critical"]
    assert len(http_receiver.bodies("/slack")) == 3
    assert len(smtp_sink.messages) == 1
    mail = smtp_sink.messages[0]
    assert mail["rcpt_to"] == ["sales-ops@example.test"]
    assert "Subject: [lead-scoring][WARNING] PSI 0.31 on lead_source" in mail["data"]
    assert len(jsonl(s)) == 3


def test_payload_shapes(tmp_path, http_receiver, smtp_sink):
    s = alert_settings(
        tmp_path,
        http_receiver.url,
        smtp_sink.port,
        **{"alerting.routes.critical": ["pagerduty", "slack", "webhook"]},
    )
    alert = event_alert(
        s,
        "error_rate",
        "error rate 7.0% > 5%",
        "the API fails",
        key="error_rate:2026-10-01",
        details={"error_rate": 0.07},
    )
    dispatch(s, [alert])
    (pd_body,) = http_receiver.bodies("/pagerduty")
    assert pd_body["routing_key"] == "rk-test-123"
    assert pd_body["event_action"] == "trigger"
    assert pd_body["dedup_key"] == "error_rate:2026-10-01"
    assert pd_body["payload"]["severity"] == "critical"
    assert pd_body["payload"]["source"] == "lead-scoring"
    assert pd_body["payload"]["summary"].startswith("error rate 7.0% > 5%")
    assert pd_body["payload"]["custom_details"] == {"error_rate": 0.07}
    (slack,) = http_receiver.bodies("/slack")
    assert slack == json.loads(json.dumps(slack_payload(alert)))
    assert "[CRITICAL] error rate 7.0% > 5%" in slack["text"]
    assert slack["blocks"][0]["type"] == "section"
    (hook,) = http_receiver.bodies("/hook")
    assert hook["key"] == alert.key and hook["severity"] == "critical"


def test_retries_with_backoff_then_success(tmp_path, http_receiver, smtp_sink):
    s = alert_settings(tmp_path, http_receiver.url, smtp_sink.port)
    http_receiver.script["/slack"] = [500, 503]
    waits: list[float] = []
    (slack, _) = dispatch(s, [event_alert(s, "promotion", "v4 promoted")], sleep=waits.append)
    assert (slack.status, slack.attempts) == ("sent", 3)
    assert waits == [0.01, 0.02]  # backoff_s * 2**(k-1)


def test_client_error_is_not_retried_and_failure_does_not_stop_the_run(
    tmp_path, http_receiver, smtp_sink, caplog
):
    s = alert_settings(tmp_path, http_receiver.url, smtp_sink.port)
    http_receiver.script["/slack"] = [400]
    results = dispatch(s, [event_alert(s, "data_drift", "drift", key="d1")], sleep=lambda _: None)
    by_channel = {r.channel: r for r in results}
    assert by_channel["slack"].status == "failed" and by_channel["slack"].attempts == 1
    assert "HTTP 400" in by_channel["slack"].error
    assert by_channel["email"].status == "sent"  # the other channels still deliver
    assert "not delivered via slack" in caplog.text
    (record,) = jsonl(s)
    assert {d["channel"]: d["status"] for d in record["deliveries"]} == {
        "slack": "failed",
        "email": "sent",
    }


def test_unreachable_channel_is_retried_then_logged(tmp_path, smtp_sink):
    # nothing listens on this port: connection refused, a retryable failure
    s = alert_settings(tmp_path, "http://127.0.0.1:9", smtp_sink.port)
    results = dispatch(s, [event_alert(s, "promotion", "v5 promoted")], sleep=lambda _: None)
    slack = next(r for r in results if r.channel == "slack")
    assert (slack.status, slack.attempts) == ("failed", 3)
    assert "cannot reach 127.0.0.1:9" in slack.error
    assert next(r for r in results if r.channel == "jsonl").status == "sent"


def test_same_alert_is_not_resent_within_the_cooldown(tmp_path, http_receiver, smtp_sink):
    s = alert_settings(tmp_path, http_receiver.url, smtp_sink.port)
    alert = event_alert(s, "data_drift", "drift on lead_source", key="data_drift:v1:lead_source")
    first = dispatch(s, [alert])
    second = dispatch(s, [alert])
    other = dispatch(
        s, [event_alert(s, "data_drift", "drift on industry", key="data_drift:v1:industry")]
    )
    assert {r.status for r in first} == {"sent"}
    assert {r.channel: r.status for r in second} == {
        "slack": "suppressed",
        "email": "suppressed",
        "jsonl": "sent",
    }
    assert {r.status for r in other} == {"sent"}
    assert len(http_receiver.bodies("/slack")) == 2
    no_cooldown = alert_settings(
        tmp_path, http_receiver.url, smtp_sink.port, **{"alerting.cooldown_minutes": 0}
    )
    assert {r.status for r in dispatch(no_cooldown, [alert])} == {"sent"}


def test_unconfigured_channel_is_skipped_and_secrets_come_from_the_environment(tmp_path):
    s = load_settings(overrides={"paths.data_dir": str(tmp_path)}, env={})
    results = dispatch(s, [event_alert(s, "model_failure", "scorer failed to load")])
    assert {r.channel: r.status for r in results} == {
        "pagerduty": "skipped",
        "slack": "skipped",
        "jsonl": "sent",
    }
    assert "LEAD_SCORING_PAGERDUTY_ROUTING_KEY" in results[0].error
    with_env = load_settings(
        overrides={"paths.data_dir": str(tmp_path)},
        env={"LEAD_SCORING_SLACK_WEBHOOK_URL": "http://127.0.0.1:1/x"},
    )
    assert with_env.secret("LEAD_SCORING_SLACK_WEBHOOK_URL") == "http://127.0.0.1:1/x"
    assert "127.0.0.1:1/x" not in json.dumps(with_env.model_dump(mode="json"))


def test_unknown_rule_is_a_config_error(tmp_path):
    from ml.errors import ConfigError

    s = load_settings(overrides={"paths.data_dir": str(tmp_path)}, env={})
    with pytest.raises(ConfigError, match="no alerting rule 'nope'"):
        event_alert(s, "nope", "x")
