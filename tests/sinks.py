"""Local notification sinks for apprise: an HTTP server for json:// and an in-process SMTP server for mailto://."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HttpSink:
    """Records every JSON POST; `down = True` makes it answer 503 (a target that is down)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.received_at: list[float] = []  # time.monotonic() of each, in the same order
        self.down = False
        self.attempts = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.attempts += 1
                if sink.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    sink.received.append(json.loads(body))
                except ValueError:
                    sink.received.append({"raw": body.decode("utf-8", "replace")})
                sink.received_at.append(time.monotonic())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "hook", credentials: str = "") -> str:
        return f"json://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}/{path}"

    def titles(self) -> list[str]:
        return [m.get("title", "") for m in self.received]

    def delivered_titles(self) -> Counter:
        """Every notification title received, also those inside combined messages (a storm, a backlog)."""
        return Counter(title for _, title in self.timeline())

    def timeline(self) -> list[tuple[float, str]]:
        """(received at, title) of every notification, those inside combined messages too."""
        out = []
        for at, m in zip(list(self.received_at), list(self.received), strict=False):  # one may be in flight
            title = m.get("title", "")
            if title.startswith("[trainwarden] ") and " notifications: " in title:
                out += [(at, t) for t in re.findall(r"^== (.+?) \(\d{4}-", m.get("message", ""), re.MULTILINE)]
            else:
                out.append((at, title))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[str] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages.append(envelope.content.decode("utf-8", "replace"))
                return "250 OK"

        with socket.socket() as probe:  # aiosmtpd cannot take port 0: find a free one
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}/to@example.com?from=alerts@example.com"

    def close(self) -> None:
        self.controller.stop()
