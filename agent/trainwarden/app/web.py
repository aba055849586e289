"""HTTP endpoints: /metrics, /api/runs, /api/runs/<run>/log, /healthz and a small landing page at /."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from trainwarden import __version__
from trainwarden.model import StatusReport
from trainwarden.outputs.status import to_json
from trainwarden.outputs.views.page import status_page

log = logging.getLogger("trainwarden.app.web")
MAX_TAIL_LINES = 5000


@dataclass
class WebApp:
    metrics: Callable[[str], tuple[bytes, str]]  # a scrape's Accept header -> (body, content type)
    status: Callable[[], StatusReport]  # the typed status report (the page draws it)
    document: Callable[[], dict]  # the same as JSON-ready data (/api/runs), converted once per version
    tail: Callable[[str, int], dict | None]  # run name, n -> {"run", "file", "lines"} or None


def make_handler(app: WebApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"trainwarden/{__version__}"

        def log_message(self, format: str, *args) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = url.path
            try:
                if path == "/metrics":
                    body, content_type = app.metrics(self.headers.get("Accept", ""))
                    self._send(200, body, content_type)
                elif path == "/api/runs":
                    self._send(200, to_json(app.document()), "application/json")
                elif path.startswith("/api/runs/") and path.endswith("/log"):
                    self._tail(unquote(path[len("/api/runs/") : -len("/log")]), parse_qs(url.query))
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/":
                    self._send(200, status_page(app.status()), "text/html; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception:  # one bad request must never take the agent down
                log.exception("error serving %s", path)
                try:
                    self._send(500, b"internal error\n", "text/plain; charset=utf-8")
                except OSError:
                    pass

        def _tail(self, run: str, query: dict) -> None:
            try:
                n = int(query.get("lines", ["20"])[0])
            except ValueError:
                self._send(400, b"lines must be a number\n", "text/plain; charset=utf-8")
                return
            result = app.tail(run, max(0, min(n, MAX_TAIL_LINES)))
            if result is None:
                self._send(404, b"no such run\n", "text/plain; charset=utf-8")
                return
            self._send(200, to_json(result), "application/json")

    return Handler


def make_server(app: WebApp, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(app))
    server.daemon_threads = True
    return server
