"""Local receivers for the alert channels: an HTTP server (Slack, webhook, PagerDuty) and an SMTP
sink, both on 127.0.0.1 with an ephemeral port."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class HttpReceiver:
    url: str
    requests: list[tuple[str, dict]] = field(default_factory=list)  # (path, JSON body)
    # statuses to answer, in order, per path; then 200 (202 for /pagerduty)
    script: dict[str, list[int]] = field(default_factory=dict)

    def bodies(self, path: str) -> list[dict]:
        return [body for p, body in self.requests if p == path]


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            receiver.requests.append((self.path, body))
            queue = receiver.script.get(self.path, [])
            status = queue.pop(0) if queue else (202 if self.path == "/pagerduty" else 200)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@dataclass
class SmtpSink:
    port: int
    messages: list[dict] = field(default_factory=list)  # mail_from, rcpt_to, data


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A minimal SMTP server: enough of RFC 5321 for smtplib's send_message."""
    sink = SmtpSink(port=0)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            msg = {"mail_from": None, "rcpt_to": [], "data": ""}
            self.wfile.write(b"220 sink ready\r\n")
            while line := self.rfile.readline():
                cmd = line.decode().strip()
                upper = cmd.upper()
                if upper.startswith(("EHLO", "HELO")):
                    self.wfile.write(b"250 sink\r\n")
                elif upper.startswith("MAIL FROM:"):
                    msg["mail_from"] = cmd[10:].strip(" <>")
                    self.wfile.write(b"250 ok\r\n")
                elif upper.startswith("RCPT TO:"):
                    msg["rcpt_to"].append(cmd[8:].strip(" <>"))
                    self.wfile.write(b"250 ok\r\n")
                elif upper == "DATA":
                    self.wfile.write(b"354 end with .\r\n")
                    data = []
                    while (row := self.rfile.readline()) not in (b".\r\n", b""):
                        data.append(row.decode())
                    msg["data"] = "".join(data)
                    sink.messages.append(dict(msg))
                    self.wfile.write(b"250 queued\r\n")
                elif upper == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()
