"""The `live` command: local runs read incrementally between refreshes, agents read over HTTP."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from trainwarden.app.remote import gather, is_url
from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host.sources import HostSources
from trainwarden.model import StatusReport
from trainwarden.outputs.status import status_report
from trainwarden.outputs.views.live import live
from trainwarden.outputs.views.status_table import make_console


def run_live(targets: list[str], cfg, interval: float, once: bool) -> None:
    local = [Path(t) for t in targets if not is_url(t)]
    fleet = Fleet(local, exclude=cfg.exclude) if local else None
    host = HostSources(pids={name: pid for name in cfg.runs if (pid := cfg.pid_of(name))}) if local else None
    logging.getLogger("trainwarden.nvml").setLevel(logging.ERROR)

    def fetch() -> StatusReport:
        part = None
        if fleet is not None:
            fleet.rediscover()  # new runs and sessions, then only the new bytes of each log
            host.update_processes(fleet, discover=True)
            part = status_report(fleet.snapshots(), cfg.policies, time.time(), host.sample_gpus().gpus)
        return gather(part, [t for t in targets if is_url(t)])[0]  # a host that is down must not blank the others

    try:
        live(fetch, interval, make_console(), once=once)
    except KeyboardInterrupt:
        pass
