"""Reading runs on this machine for the one-shot commands (`status`, `tail`): no threads, no server."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from trainwarden.errors import NothingFound, UsageError
from trainwarden.model import StatusReport


def console_files(specs: list[str] | None) -> list[tuple[str | None, Path]]:
    """`--console [RUN=]FILE` values."""
    out = []
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or Path(spec).exists():
            name, path = None, spec
        if not Path(path).is_file():
            raise UsageError(f"--console: no such file: {path}")
        out.append((name or None, Path(path)))
    return out


def local_status(paths: list[Path], cfg, consoles=()) -> StatusReport:
    from trainwarden.ingest.fleet import Fleet
    from trainwarden.ingest.host.sources import HostSources
    from trainwarden.outputs.status import status_report

    fleet = Fleet(paths, consoles=list(consoles), exclude=cfg.exclude)
    fleet.rediscover()
    host = HostSources(pids={name: pid for name in cfg.runs if (pid := cfg.pid_of(name))})
    host.update_processes(fleet, discover=True)
    logging.getLogger("trainwarden.nvml").setLevel(logging.ERROR)  # said in the document, not as a warning
    reading = host.sample_gpus()
    host.close()
    return status_report(fleet.snapshots(), cfg.policies, time.time(), reading.gpus, reading.error)


def local_tail(path: Path, run: str | None, n: int) -> list[str]:
    from trainwarden.ingest.files.discover import describe, find_work_dirs, newest_log, run_names
    from trainwarden.ingest.files.lines import last_lines

    if path.is_file():
        return last_lines(path, n)
    if not path.is_dir():
        raise UsageError(f"tail: no such file or folder: {path}")
    work_dirs = find_work_dirs(path)
    names = run_names(work_dirs)
    if run is not None:
        work_dirs = [wd for wd in work_dirs if names[wd] == run]
    if not work_dirs:
        raise NothingFound(f"tail: no run{' named ' + run if run else ''} under {path}")
    if len(work_dirs) > 1:
        raise UsageError(f"tail: {path} holds {len(work_dirs)} runs ({', '.join(names[w] for w in work_dirs)}): "
                         "name one with --run")

    log_path = newest_log(describe(work_dirs[0]))
    if log_path is None:
        raise NothingFound(f"tail: {work_dirs[0]} has no text log yet")
    return last_lines(log_path, n)


