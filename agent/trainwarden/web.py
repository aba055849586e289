"""HTTP endpoints: /metrics, /api/runs, /api/runs/<run>/log, /healthz and a small landing page at /."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from . import __version__
from .document import to_json

log = logging.getLogger("trainwarden.web")
MAX_TAIL_LINES = 5000


@dataclass
class WebApp:
    registry: CollectorRegistry
    status: Callable[[], dict]  # the status document
    tail: Callable[[str, int], dict | None]  # run name, n -> {"run", "file", "lines"} or None


def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "—"


def landing_page(doc: dict) -> bytes:
    rows = []
    for run in doc["runs"]:
        name = html.escape(run["run"])
        epoch = f"{run['epoch']}/{run['max_epochs'] or '?'}" if run.get("epoch") is not None else "—"
        progress = f"{run['progress_ratio'] * 100:.1f} %" if run.get("progress_ratio") is not None else "—"
        loss = f"{run['loss']:.4f}" if run.get("loss") is not None else "—"
        last_eval = "—"
        vals = [e for e in run["evaluations"] if run.get("eval_key") in e["metrics"]]
        if vals and vals[-1]["metrics"][run["eval_key"]] is not None:
            last_eval = f"{html.escape(run['eval_key'])} {vals[-1]['metrics'][run['eval_key']]:.4f}"
        rows.append(
            f"<tr class='{html.escape(run['state'])}'><td>{name}</td><td>{html.escape(run['state'])}</td>"
            f"<td>{epoch}</td><td>{progress}</td><td>{loss}</td><td>{last_eval}</td>"
            f"<td>{_fmt_time(run.get('expected_completion_timestamp_seconds'))}</td>"
            f"<td><a href='/api/runs/{quote(run['run'], safe='')}/log?lines=50'>log</a></td></tr>"
        )
    body = "\n".join(rows) or "<tr><td colspan='8'>No runs found yet.</td></tr>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>trainwarden</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}
td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}
tr.crashed td,tr.stalled td{{background:#fde2e2}} tr.finished td{{background:#e3f5e1}}
tr.early_stopped td{{background:#fff3cd}}
</style></head><body><h1>trainwarden</h1>
<table><tr><th>run</th><th>state</th><th>epoch</th><th>progress</th><th>loss</th><th>last evaluation</th>
<th>expected end</th><th></th></tr>
{body}</table>
<p><a href="/metrics">/metrics</a> · <a href="/api/runs">/api/runs</a> · <a href="/healthz">/healthz</a>
· trainwarden {html.escape(__version__)}</p></body></html>"""
    return page.encode("utf-8")


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
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._send(200, encoder(app.registry), content_type)
                elif path == "/api/runs":
                    self._send(200, to_json(app.status()), "application/json")
                elif path.startswith("/api/runs/") and path.endswith("/log"):
                    self._tail(unquote(path[len("/api/runs/") : -len("/log")]), parse_qs(url.query))
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/":
                    self._send(200, landing_page(app.status()), "text/html; charset=utf-8")
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
