"""Alert routing, payload shapes, retries, failures that do not stop the run, the cool-down,
SMTP over verified STARTTLS, and secrets kept out of every log, against local receivers
(loopback only)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from ml.alerts import dispatch, event_alert
from ml.alerts.senders import slack_payload
from ml.config import DEFAULT_CONFIG, Settings, load_settings
from ml.monitoring.store import alert_log, monitoring_engine

ENV = {
    "LEAD_SCORING_SLACK_WEBHOOK_URL": "/slack",
    "LEAD_SCORING_ALERT_WEBHOOK_URL": "/hook",
    "LEAD_SCORING_PAGERDUTY_ROUTING_KEY": "rk-test-123",
}


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file); the cert doubles as the
    CA bundle a client trusts it with."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class SmtpServer:
    """What the fake SMTP server saw: `events` in order (commands, "TLS" when the handshake
    completed), logins as (user, password, over_tls), and delivered messages."""

    port: int
    ca_file: Path  # the CA bundle that trusts its certificate
    offer_starttls: bool = True
    events: list[str] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)  # mail_from, rcpt_to, data


@pytest.fixture
def smtp_server(tls_cert) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 that offers STARTTLS (unless `offer_starttls` is False) and
    AUTH PLAIN; enough of RFC 5321/3207/4954 for smtplib."""
    server_state = SmtpServer(port=0, ca_file=tls_cert[0])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*tls_cert)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            over_tls = False
            msg = {"mail_from": None, "rcpt_to": [], "data": ""}

            def say(text: str) -> None:
                self.wfile.write(text.encode() + b"\r\n")
                self.wfile.flush()

            say("220 fake ready")
            while line := self.rfile.readline():
                cmd = line.decode().strip()
                upper = cmd.upper()
                server_state.events.append(upper.split(" ")[0])
                if upper.startswith(("EHLO", "HELO")):
                    extensions = ["fake"]
                    if server_state.offer_starttls and not over_tls:
                        extensions.append("STARTTLS")
                    if over_tls or not server_state.offer_starttls:
                        extensions.append("AUTH PLAIN")
                    lines = [f"250-{e}" for e in extensions[:-1]] + [f"250 {extensions[-1]}"]
                    say("\r\n".join(lines))
                elif upper == "STARTTLS" and server_state.offer_starttls and not over_tls:
                    say("220 go ahead")
                    try:
                        conn = tls.wrap_socket(self.connection, server_side=True)
                    except (ssl.SSLError, OSError):
                        server_state.events.append("TLS-FAILED")
                        return
                    self.connection = conn
                    self.rfile = conn.makefile("rb")
                    self.wfile = conn.makefile("wb")
                    over_tls = True
                    server_state.events.append("TLS")
                elif upper.startswith("AUTH PLAIN"):
                    _, user, password = base64.b64decode(cmd.split(" ", 2)[2]).decode().split("\0")
                    server_state.logins.append((user, password, over_tls))
                    say("235 authenticated")
                elif upper.startswith("MAIL FROM:"):
                    msg["mail_from"] = cmd[10:].split()[0].strip(" <>")
                    say("250 ok")
                elif upper.startswith("RCPT TO:"):
                    msg["rcpt_to"].append(cmd[8:].strip(" <>"))
                    say("250 ok")
                elif upper == "DATA":
                    say("354 end with .")
                    data = []
                    while (row := self.rfile.readline()) not in (b".\r\n", b""):
                        data.append(row.decode())
                    msg["data"] = "".join(data)
                    server_state.messages.append(dict(msg))
                    say("250 queued")
                elif upper == "QUIT":
                    say("221 bye")
                    return
                else:
                    say("250 ok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_state.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server_state
    server.shutdown()
    server.server_close()


def alert_settings(tmp_path: Path, http_url: str, smtp: SmtpServer, **overrides) -> Settings:
    fast = {"timeout_s": 2, "backoff_s": 0.01, "retries": 2}
    tree = {
        "paths.data_dir": str(tmp_path),
        "alerting.channels.pagerduty.events_url": f"{http_url}/pagerduty",
        "alerting.channels.email.smtp_port": smtp.port,
        "alerting.channels.email.smtp_host": "127.0.0.1",
        "alerting.channels.email.ca_file": str(smtp.ca_file),
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


def test_routes_follow_the_original_severities(tmp_path, http_receiver, smtp_server):
    s = alert_settings(tmp_path, http_receiver.url, smtp_server)
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
    assert len(smtp_server.messages) == 1
    mail = smtp_server.messages[0]
    assert mail["rcpt_to"] == ["sales-ops@example.test"]
    assert "Subject: [lead-scoring][WARNING] PSI 0.31 on lead_source" in mail["data"]
    assert len(jsonl(s)) == 3


def test_payload_shapes(tmp_path, http_receiver, smtp_server):
    s = alert_settings(
        tmp_path,
        http_receiver.url,
        smtp_server,
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


def test_retries_with_backoff_then_success(tmp_path, http_receiver, smtp_server):
    s = alert_settings(tmp_path, http_receiver.url, smtp_server)
    http_receiver.script["/slack"] = [500, 503]
    waits: list[float] = []
    (slack, _) = dispatch(s, [event_alert(s, "promotion", "v4 promoted")], sleep=waits.append)
    assert (slack.status, slack.attempts) == ("sent", 3)
    assert waits == [0.01, 0.02]  # backoff_s * 2**(k-1)


def test_client_error_is_not_retried_and_failure_does_not_stop_the_run(
    tmp_path, http_receiver, smtp_server, caplog
):
    s = alert_settings(tmp_path, http_receiver.url, smtp_server)
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


def test_unreachable_channel_is_retried_then_logged(tmp_path, smtp_server):
    # nothing listens on this port: connection refused, a retryable failure
    s = alert_settings(tmp_path, "http://127.0.0.1:9", smtp_server)
    results = dispatch(s, [event_alert(s, "promotion", "v5 promoted")], sleep=lambda _: None)
    slack = next(r for r in results if r.channel == "slack")
    assert (slack.status, slack.attempts) == ("failed", 3)
    assert "cannot reach 127.0.0.1:9" in slack.error
    assert next(r for r in results if r.channel == "jsonl").status == "sent"


def test_same_alert_is_not_resent_within_the_cooldown(tmp_path, http_receiver, smtp_server):
    s = alert_settings(tmp_path, http_receiver.url, smtp_server)
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
        tmp_path, http_receiver.url, smtp_server, **{"alerting.cooldown_minutes": 0}
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


# --- SMTP over STARTTLS -------------------------------------------------------------------


def email_only(tmp_path: Path, smtp: SmtpServer, **overrides) -> Settings:
    """Warnings go by email only; SMTP credentials set; nothing else configured."""
    tree = {
        "paths.data_dir": str(tmp_path),
        "alerting.routes.warning": ["email"],
        "alerting.channels.email.smtp_host": "127.0.0.1",
        "alerting.channels.email.smtp_port": smtp.port,
        "alerting.channels.email.recipients": ["sales-ops@example.test"],
        "alerting.channels.email.timeout_s": 5,
        "alerting.channels.email.retries": 2,
        "alerting.channels.email.backoff_s": 0,
        **overrides,
    }
    env = {"LEAD_SCORING_SMTP_USER": "alerts", "LEAD_SCORING_SMTP_PASSWORD": "pw-0123456789"}
    return load_settings(overrides=tree, env=env)


def test_starttls_is_the_default():
    assert load_settings(DEFAULT_CONFIG, env={}).alerting.channels.email.starttls is True
    from ml.config import EmailChannel

    assert EmailChannel().starttls is True


def test_email_logs_in_only_after_a_verified_starttls(tmp_path, smtp_server):
    s = email_only(
        tmp_path, smtp_server, **{"alerting.channels.email.ca_file": smtp_server.ca_file}
    )
    (email, _) = dispatch(s, [event_alert(s, "data_drift", "drift", key="d1")])
    assert email.status == "sent", email.error
    assert smtp_server.events[:4] == ["EHLO", "STARTTLS", "TLS", "EHLO"]
    assert smtp_server.logins == [("alerts", "pw-0123456789", True)]
    assert len(smtp_server.messages) == 1


def test_email_refuses_a_server_without_starttls(tmp_path, smtp_server, caplog):
    """A relay that does not offer STARTTLS (or a man in the middle stripping it) gets neither
    the login nor the message, and trying again cannot help."""
    smtp_server.offer_starttls = False
    s = email_only(tmp_path, smtp_server)
    (email, _) = dispatch(s, [event_alert(s, "data_drift", "drift", key="d1")])
    assert (email.status, email.attempts) == ("failed", 1)
    assert "does not offer STARTTLS" in email.error
    assert smtp_server.logins == [] and smtp_server.messages == []
    assert "AUTH" not in smtp_server.events


def test_email_refuses_an_untrusted_certificate(tmp_path, smtp_server):
    # the server's self-signed certificate is not in the system's CAs
    s = email_only(tmp_path, smtp_server)
    (email, _) = dispatch(s, [event_alert(s, "data_drift", "drift", key="d1")])
    assert (email.status, email.attempts) == ("failed", 1)
    assert "certificate not trusted" in email.error
    assert smtp_server.logins == [] and smtp_server.messages == []


def test_plain_smtp_only_when_configured_and_with_a_warning(tmp_path, smtp_server, caplog):
    smtp_server.offer_starttls = False
    s = email_only(tmp_path, smtp_server, **{"alerting.channels.email.starttls": False})
    with caplog.at_level(logging.WARNING, logger="ml.alerts"):
        (email, _) = dispatch(s, [event_alert(s, "data_drift", "drift", key="d1")])
    assert email.status == "sent"
    assert smtp_server.logins == [("alerts", "pw-0123456789", False)]
    assert "over a plain connection" in caplog.text and "starttls is false" in caplog.text


# --- secrets never logged -------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SECRET_ENV = {
    "LEAD_SCORING_SLACK_WEBHOOK_URL": "{http}/services/T0/B0/slack-marker-7f3a9c",
    "LEAD_SCORING_ALERT_WEBHOOK_URL": "http://hook:webhook-marker-2b8d1e@127.0.0.1:{port}/hook",
    "LEAD_SCORING_PAGERDUTY_ROUTING_KEY": "pagerduty-marker-5c4e0a",
    "LEAD_SCORING_SMTP_USER": "smtp-user-marker-91d2",
    "LEAD_SCORING_SMTP_PASSWORD": "smtp-password-marker-e6f7",
}
MARKERS = ["slack-marker-7f3a9c", "webhook-marker-2b8d1e", "pagerduty-marker-5c4e0a"]
MARKERS += ["smtp-user-marker-91d2", "smtp-password-marker-e6f7"]


@pytest.fixture
def echo_server() -> Iterator[int]:
    """An HTTP server that answers every POST with 400 and echoes the path and body it got
    (as some proxies and gateways do); yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.end_headers()
            self.wfile.write(f"bad request to {self.path}: ".encode() + body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("failure", ["refused", "malformed", "echoed"])
def test_secrets_never_reach_the_logs(tmp_path, caplog, echo_server, failure):
    """Every channel fails (nothing listens; the Slack URL is not a URL at all; or the HTTP
    endpoints answer 400 echoing the request) and the configured secrets appear in none of the
    logs, the JSON-lines file or the alert history."""
    port = echo_server if failure == "echoed" else closed_port()
    env = {k: v.format(http=f"http://127.0.0.1:{port}", port=port) for k, v in SECRET_ENV.items()}
    if failure == "malformed":
        env["LEAD_SCORING_SLACK_WEBHOOK_URL"] = "slack-marker-7f3a9c"  # pasted without https://
    channels = ["slack", "webhook", "email", "pagerduty"]
    s = load_settings(
        overrides={
            "paths.data_dir": str(tmp_path),
            "alerting.routes.critical": channels,
            "alerting.channels.pagerduty.events_url": f"http://127.0.0.1:{port}/v2/enqueue",
            "alerting.channels.email.smtp_host": "127.0.0.1",
            "alerting.channels.email.smtp_port": closed_port(),
            "alerting.channels.email.recipients": ["ops@example.test"],
            **{f"alerting.channels.{c}.retries": 1 for c in channels},
            **{f"alerting.channels.{c}.timeout_s": 2 for c in channels},
        },
        env=env,
    )
    assert s.secret("LEAD_SCORING_PAGERDUTY_ROUTING_KEY") == "pagerduty-marker-5c4e0a"
    with caplog.at_level(logging.DEBUG):
        results = dispatch(
            s, [event_alert(s, "model_failure", "scorer failed to load")], sleep=lambda _: None
        )
    assert {r.channel: r.status for r in results} == {
        **{c: "failed" for c in channels},
        "jsonl": "sent",
    }
    engine = monitoring_engine(s)
    with engine.connect() as conn:
        history = [dict(r._mapping) for r in conn.execute(sa.select(alert_log))]
    engine.dispose()
    assert len(history) == 5
    logged = "\n".join(
        [
            caplog.text,
            *(r.getMessage() for r in caplog.records),
            s.alerting.channels.jsonl.path.read_text(),
            json.dumps(history, default=str),
            json.dumps([r.to_dict() for r in results]),
        ]
    )
    assert "127.0.0.1" in logged  # the failures are logged, naming the host
    if failure == "echoed":
        assert "HTTP 400" in logged and "bad request to" in logged  # with the server's answer
    leaked = [m for m in MARKERS if m in logged]
    assert leaked == []
