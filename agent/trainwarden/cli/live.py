"""The `live` command: local runs read incrementally between refreshes, agents read over HTTP."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from trainwarden.app.remote import RemoteError, fetch_status, is_url
from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host.sources import HostSources
from trainwarden.outputs.status import status_document
from trainwarden.outputs.views.live import live
from trainwarden.outputs.views.status_table import make_console


def run_live(targets: list[str], cfg, interval: float, once: bool) -> None:
    local = [Path(t) for t in targets if not is_url(t)]
    fleet = Fleet(local) if local else None
    host = HostSources(pids={name: pid for name in cfg.runs if (pid := cfg.pid_of(name))}) if local else None
    logging.getLogger("trainwarden.nvml").setLevel(logging.ERROR)

    def fetch() -> dict:
        doc: dict = {"runs": [], "gpus": []}
        if fleet is not None:
            fleet.rediscover()  # new runs and sessions, then only the new bytes of each log
            host.update_processes(fleet, discover=True)
            part = status_document(fleet.snapshots(), cfg.policies, time.time(), host.sample_gpus().gpus)
            doc["runs"] += part["runs"]
            doc["gpus"] += part["gpus"]
        for url in (t for t in targets if is_url(t)):
            try:
                part = fetch_status(url)
            except RemoteError:
                continue  # a host that is down must not blank the others
            doc["runs"] += part["runs"]
            doc["gpus"] += part.get("gpus") or []
        return doc

    try:
        live(fetch, interval, make_console(), once=once)
    except KeyboardInterrupt:
        pass
