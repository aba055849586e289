"""The `analyze` command: read one run completely (every line, for the whole history) and report on it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from trainwarden.ingest.files.discover import describe, find_work_dirs, run_names
from trainwarden.ingest.reader import RunReader
from trainwarden.model import Health
from trainwarden.outputs.status import status_report, to_json
from trainwarden.outputs.views.analyze import analysis, render_html, render_text
from trainwarden.outputs.views.status_table import make_console


def run_analyze(path: Path, run: str | None, cfg, as_json: bool, html_file: Path | None) -> int:
    work_dirs = find_work_dirs(path.absolute())
    names = run_names(work_dirs)
    if run is not None:
        work_dirs = [wd for wd in work_dirs if names[wd] == run]
    if len(work_dirs) != 1:
        found = ", ".join(names[w] for w in find_work_dirs(path.absolute())) or "none"
        raise LookupError(f"{path} holds {len(work_dirs)} matching runs (found: {found}): name one with --run")
    wd = work_dirs[0]
    reader = RunReader(describe(wd, names[wd]), cold_scan=False)  # every line: the whole history for the plots
    reader.state.first_seen = None  # a post-mortem the user asked for: judged in full, never set aside as history
    reader.refresh()
    snap = reader.state.snapshot()
    policy = cfg.policies.for_run(snap.run)
    run_report = status_report([snap], cfg.policies, time.time()).runs[0]
    report = analysis(run_report, snap, policy)
    if as_json:
        sys.stdout.write(to_json(report).decode("utf-8") + "\n")
    elif html_file is not None:
        html_file.write_text(render_html(report), encoding="utf-8")
        print(f"wrote {html_file}")
    else:
        render_text(report, make_console())
    return 3 if run_report.health == Health.RED else 0
