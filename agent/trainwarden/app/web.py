"""HTTP endpoints: /metrics, /api/runs, /api/runs/<run>/log, /healthz and a small landing page at /.

Served by a small HTTP/1.0 server of our own on `socketserver` (GET and HEAD, one request per connection, as
`http.server` answers by default), not by `http.server`: that module imports `http.client`, `email` and through
them OpenSSL (`ssl`, `hashlib`), about 8 MiB resident in an agent that serves plain local HTTP and needs none of
it (bench/peer_figures.py: the agent's resident memory against mtail's).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
            414: "Request-URI Too Long", 431: "Request Header Fields Too Large", 500: "Internal Server Error"}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_LINE_BYTES = 65536  # a request line or header line longer than this is refused (as http.server does)
MAX_HEADERS = 100
REQUEST_TIMEOUT_SECONDS = 30.0  # a client that sends nothing for this long is dropped (its thread freed)


def http_date(t: float) -> str:
    """RFC 9110's IMF-fixdate, in English whatever the locale."""
    g = time.gmtime(t)
    return (f"{_DAYS[g.tm_wday]}, {g.tm_mday:02d} {_MONTHS[g.tm_mon - 1]} {g.tm_year} "
            f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} GMT")


class _BadRequest(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def make_handler(app: WebApp) -> type[socketserver.StreamRequestHandler]:
    server_version = f"trainwarden/{__version__} Python/{sys.version_info.major}.{sys.version_info.minor}"

    class Handler(socketserver.StreamRequestHandler):
        timeout = REQUEST_TIMEOUT_SECONDS
        command = "GET"
        path = "/"
        headers: dict[str, str] = {}  # noqa: RUF012 - replaced per request, names lower-cased

        def handle(self) -> None:
            try:
                self._read_request()
            except _BadRequest as exc:
                self._send(exc.code, f"{exc}\n".encode(), "text/plain; charset=utf-8")
                return
            except (TimeoutError, OSError):
                return  # a client that went away or never finished its request: nothing to answer
            try:
                self._route()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass

        def _line(self, too_long: int) -> str:
            raw = self.rfile.readline(MAX_LINE_BYTES + 1)
            if len(raw) > MAX_LINE_BYTES:
                raise _BadRequest(too_long, "line too long")
            return raw.decode("iso-8859-1").rstrip("\r\n")

        def _read_request(self) -> None:
            words = self._line(414).split()
            if not words:
                raise OSError("no request")  # a connection closed before a request: a port probe
            if len(words) != 3 or not words[2].startswith("HTTP/"):
                raise _BadRequest(400, "bad request line")
            self.command, self.path = words[0], words[1]
            self.headers = {}
            for _ in range(MAX_HEADERS + 1):
                text = self._line(431)
                if not text:
                    break
                name, sep, value = text.partition(":")
                if not sep:
                    raise _BadRequest(400, "bad header line")
                self.headers[name.strip().lower()] = value.strip()
            else:
                raise _BadRequest(431, "too many headers")
            if self.command not in ("GET", "HEAD"):
                raise _BadRequest(405, f"method {self.command} not allowed")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            head = (f"HTTP/1.0 {code} {_REASONS.get(code, 'Error')}\r\nServer: {server_version}\r\n"
                    f"Date: {http_date(time.time())}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode("latin-1")
            self.wfile.write(head if self.command == "HEAD" else head + body)

        def _route(self) -> None:
            url = urlsplit(self.path)
            path = url.path
            try:
                if path == "/metrics":
                    body, content_type = app.metrics(self.headers.get("accept", ""))
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


class HttpServer(socketserver.ThreadingTCPServer):
    """A thread per connection (daemon threads: a stuck client never holds up the agent's exit)."""

    daemon_threads = True
    allow_reuse_address = sys.platform != "win32"  # on Windows SO_REUSEADDR lets a second agent take the port
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[socketserver.BaseRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


def make_server(app: WebApp, host: str, port: int) -> HttpServer:
    return HttpServer((host, port), make_handler(app))
