"""Read a running agent over HTTP (`status http://gpu-host:9841`, `tail http://gpu-host:9841 --run NAME`)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

from trainwarden.model import StatusReport
from trainwarden.model.codec import from_plain

TIMEOUT_SECONDS = 10


class RemoteError(Exception):
    pass


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _get(url: str, params: dict | None = None, timeout: float = TIMEOUT_SECONDS) -> dict:
    import requests  # only for remote reads

    try:
        response = requests.get(url, params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise RemoteError(f"{url}: {type(exc).__name__}") from None
    if response.status_code == 404:
        raise RemoteError(f"{url}: not found (404)")
    if response.status_code != 200:
        raise RemoteError(f"{url}: HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise RemoteError(f"{url}: the answer is not JSON (is this a trainwarden agent?)") from None


def fetch_status(base: str, timeout: float = TIMEOUT_SECONDS) -> StatusReport:
    """Another agent's status document, read into the same types as a local one; each run and GPU says its source."""
    doc = _get(base.rstrip("/") + "/api/runs", timeout=timeout)
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise RemoteError(f"{base}: the answer is not a trainwarden status document")
    try:
        report = from_plain(StatusReport, doc)
    except (TypeError, ValueError) as exc:
        raise RemoteError(f"{base}: the answer is not a trainwarden status document ({exc})") from None
    return replace(report, runs=tuple(replace(r, source=base) for r in report.runs),
                   gpus=tuple(replace(g, source=base) for g in report.gpus))


def gather(local: StatusReport | None, urls: list[str]) -> tuple[StatusReport, list[str]]:
    """This machine's runs (when read) and every agent's, side by side; the agents that could not be read are
    named, not fatal: one host down must not hide the others."""
    report = local if local is not None else StatusReport()
    unreachable = []
    for url in urls:
        try:
            report = report.merged(fetch_status(url))
        except RemoteError as exc:
            unreachable.append(str(exc))
    return report, unreachable


def fetch_tail(base: str, run: str | None, n: int, timeout: float = TIMEOUT_SECONDS) -> dict:
    if run is None:
        runs = fetch_status(base, timeout).runs
        if len(runs) != 1:
            names = ", ".join(r.run for r in runs) or "none"
            raise RemoteError(f"{base} watches {len(runs)} runs ({names}): name one with --run")
        run = runs[0].run
    return _get(f"{base.rstrip('/')}/api/runs/{quote(run, safe='')}/log", {"lines": n}, timeout)
