"""Read a running agent over HTTP (`status http://gpu-host:9841`, `tail http://gpu-host:9841 --run NAME`)."""

from __future__ import annotations

from urllib.parse import quote

TIMEOUT_SECONDS = 10


class RemoteError(Exception):
    pass


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _get(url: str, params: dict | None = None) -> dict:
    import requests  # only for remote reads

    try:
        response = requests.get(url, params=params, timeout=TIMEOUT_SECONDS)
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


def fetch_status(base: str) -> dict:
    doc = _get(base.rstrip("/") + "/api/runs")
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise RemoteError(f"{base}: the answer is not a trainwarden status document")
    for run in doc["runs"]:
        run["source"] = base
    for gpu in doc.get("gpus") or []:
        gpu["source"] = base
    return doc


def fetch_tail(base: str, run: str | None, n: int) -> dict:
    if run is None:
        runs = fetch_status(base)["runs"]
        if len(runs) != 1:
            names = ", ".join(r["run"] for r in runs) or "none"
            raise RemoteError(f"{base} watches {len(runs)} runs ({names}): name one with --run")
        run = runs[0]["run"]
    return _get(f"{base.rstrip('/')}/api/runs/{quote(run, safe='')}/log", {"lines": n})
