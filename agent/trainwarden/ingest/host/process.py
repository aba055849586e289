"""Find each run's training process without being told, follow it, and notice how it ends.

A process belongs to a run when (in this order) the config names its PID, its command line names the run's
config (`tools/train.py configs/x/<config>.py`, or `<work dir name>.py`, MMEngine's default work dir) or its work
dir (`--work-dir work_dirs/<name>`), or it holds one of the run's logs open. Of several matching processes the
top-most wins (DataLoader workers and torchrun ranks are its descendants). Its descendants are listed so GPU
processes can be mapped to runs. When it ends, the time is kept and the exit code when this process is its parent
(`trainwarden run`); otherwise the exit code is unknown (None).

Only process ids, names and times leave this module: command lines can hold secrets.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainwarden.model import ProcessInfo

log = logging.getLogger("trainwarden.process")


@dataclass
class RunTarget:
    run: str
    work_dir: Path
    logs: list[Path] = field(default_factory=list)
    config_name: str | None = None  # the config copy MMEngine writes into the work dir
    pid: int | None = None  # given in the config file


@dataclass
class Tracked:
    pid: int
    create_time: float
    matched_by: str
    name: str
    handle: object
    pids: set[int] = field(default_factory=set)  # the process and its descendants
    up: bool = True
    exit_code: int | None = None
    ended: float | None = None
    external: bool = False  # our child, reaped by `trainwarden run` (which reports its exit code): never wait() on it

    def document(self) -> ProcessInfo:
        return ProcessInfo(self.pid, self.name, self.up, self.matched_by, self.create_time, self.ended, self.exit_code,
                           tuple(sorted(self.pids)))


def _norm(text: str) -> str:
    return text.replace("\\", "/").rstrip("/").strip("'\"")


def _is_trainwarden(cmdline: list[str]) -> bool:
    """`.../bin/trainwarden ...` or `python -m trainwarden ...` (a path that merely contains the word is not)."""
    head = [_norm(a).rsplit("/", 1)[-1].lower() for a in cmdline[:3]]
    return any(h in ("trainwarden", "trainwarden.exe", "trainwarden-script.py") for h in head) or (
        len(head) >= 3 and head[1] == "-m" and head[2] == "trainwarden"
    )


def _names_run(cmdline: list[str], target: RunTarget) -> str | None:
    """How a Python command line names the run: its config, or its work dir next to a training script."""
    if "python" not in _norm(cmdline[0]).rsplit("/", 1)[-1].lower() or _is_trainwarden(cmdline):
        return None  # not a Python process, or one of our own commands (`status`, `watch` name work dirs too)
    wd_name = target.work_dir.name
    configs = {f"{wd_name}.py"}
    if target.config_name:
        configs.add(target.config_name)
    parts = [part for arg in cmdline[1:] for part in _norm(arg).split("=")]  # also `--work-dir=x`, `work_dir=x`
    bases = [part.rsplit("/", 1)[-1] for part in parts]
    if any(base in configs for base in bases):
        return "cmdline_config"
    # a work dir alone also names tensorboard's or an editor's command line: only with a training script
    if wd_name in bases and any("train" in base for base in bases if base != wd_name):
        return "cmdline_work_dir"
    return None


# A run that has not written for this long is looked for no more (walking every process's command line and open
# files costs more than all the reading on a busy machine); it is looked for again as soon as it writes (a resume).
SEARCH_WHILE_WRITTEN_SECONDS = 600.0
# A run looked for in vain (its trainer runs on another machine, or as another user) is looked for again after 1 s,
# then 2, 4, ... up to every 10 minutes: each walk of every process cost 25 ms at each discovery (every 30 s, or 5 s
# when polling), most of what the agent spends on 8 quiet runs. A new session (a resume starts a new process) or
# a PID given in the config resets the wait.
SEARCH_AGAIN_FIRST_SECONDS = 1.0
SEARCH_AGAIN_MAX_SECONDS = 600.0


def _written_since(logs: list[Path], since: float) -> bool:
    for log in logs:
        try:
            if log.stat().st_mtime >= since:
                return True
        except OSError:
            continue
    return False


class ProcessTracker:
    def __init__(self, psutil_module=None, clock: Callable[[], float] = time.time, own_pid: int | None = None) -> None:
        if psutil_module is None:
            import psutil as psutil_module  # imported here: only the commands that look for processes pay for it
        self.psutil = psutil_module
        self.clock = clock
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.tracked: dict[str, Tracked] = {}
        self._searched: dict[str, tuple] = {}  # run -> what it was looked for by (its logs, config, PID)
        self._misses: dict[str, int] = {}  # run -> searches in a row that found nothing
        self._next_search: dict[str, float] = {}  # run -> not looked for again before this time

    # -- discovery -------------------------------------------------------------------------------------------
    def discover(self, targets: list[RunTarget]) -> None:
        """Look for the process of every run that has none running (a resume starts a new one)."""
        now = self.clock()
        wanted = [t for t in targets if self._wants_search(t, now)]
        if not wanted:
            return
        candidates: dict[int, tuple[object, list[str]]] = {}
        # the command line alone: a process's name and parent are read only for the few that could match
        for proc in self.psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline")
            if proc.pid != self.own_pid and cmdline:
                candidates[proc.pid] = (proc, cmdline)
        open_files: dict[int, set[str]] = {}  # pid -> the files it holds open, read once for all the runs
        for target in wanted:
            found = self._match(target, candidates, open_files)
            if found is not None:
                self._track(target.run, *found)
                self._misses.pop(target.run, None)
                self._next_search.pop(target.run, None)
            else:
                misses = self._misses[target.run] = self._misses.get(target.run, 0) + 1
                wait = min(SEARCH_AGAIN_MAX_SECONDS, SEARCH_AGAIN_FIRST_SECONDS * 2 ** (misses - 1))
                self._next_search[target.run] = now + wait

    def _wants_search(self, target: RunTarget, now: float) -> bool:
        tracked = self.tracked.get(target.run)
        if tracked is not None and tracked.up:
            return False
        key = (tuple(target.logs), target.config_name, target.pid)
        if self._searched.get(target.run) != key:  # never looked for, or a new session or PID since
            self._searched[target.run] = key
            self._misses.pop(target.run, None)
            return True
        if now < self._next_search.get(target.run, 0.0):
            return False
        return _written_since(target.logs, now - SEARCH_WHILE_WRITTEN_SECONDS)

    def _match(self, target: RunTarget, candidates: dict, open_files: dict[int, set[str]]) -> tuple[object, str] | None:
        if target.pid is not None:
            try:
                return self.psutil.Process(target.pid), "config_pid"
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                return None
        matches: dict[int, tuple[object, str]] = {}
        for pid, (proc, cmdline) in candidates.items():
            how = _names_run(cmdline, target)
            if how:
                matches[pid] = (proc, how)
        if not matches:
            logs = {str(p.absolute()) for p in target.logs}
            for pid, (proc, cmdline) in candidates.items():
                held = self._open_files(pid, proc, cmdline, open_files)
                if held and not held.isdisjoint(logs):
                    matches[pid] = (proc, "open_log")
        # the top-most match: its parent is not a match too
        for _pid, (proc, how) in sorted(matches.items()):
            if self._parent(proc) not in matches:
                return proc, how
        return None

    def _open_files(self, pid: int, proc, cmdline: list[str], cache: dict[int, set[str]]) -> set[str]:
        """The files a Python process holds open (other processes are not trainers): read once per search."""
        if pid not in cache:
            cache[pid] = set()
            try:
                if "python" in cmdline[0].lower() or "python" in (proc.name() or "").lower():
                    cache[pid] = {f.path for f in proc.open_files()}
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, OSError):
                pass
        return cache[pid]

    def _parent(self, proc) -> int:
        try:
            return proc.ppid() or 0
        except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
            return 0

    def _track(self, run: str, proc, how: str) -> None:
        try:
            tracked = Tracked(pid=proc.pid, create_time=proc.create_time(), matched_by=how, name=proc.name(), handle=proc)
        except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
            return
        self.tracked[run] = tracked
        self._refresh_descendants(tracked)
        log.info("run %s: training process %d found (%s)", run, tracked.pid, how)

    def _refresh_descendants(self, tracked: Tracked) -> None:
        pids = {tracked.pid}
        if tracked.handle is None:
            tracked.pids = pids
            return
        try:
            pids |= {c.pid for c in tracked.handle.children(recursive=True)}
        except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
            pass
        tracked.pids = pids

    def adopt(self, run: str, pid: int) -> None:
        """`trainwarden run`'s own child: tracked without waiting on it, its exit code comes from `report_exit`."""
        try:
            proc = self.psutil.Process(pid)
            self.tracked[run] = Tracked(pid=pid, create_time=proc.create_time(), matched_by="started_by_trainwarden",
                                        name=proc.name(), handle=proc, external=True)
        except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
            self.tracked[run] = Tracked(pid=pid, create_time=self.clock(), matched_by="started_by_trainwarden",
                                        name="?", handle=None, external=True)
        self._refresh_descendants(self.tracked[run])

    def report_exit(self, run: str, code: int) -> None:
        tracked = self.tracked.get(run)
        if tracked is not None:
            tracked.up = False
            tracked.exit_code = code
            tracked.ended = tracked.ended or self.clock()

    # -- following -------------------------------------------------------------------------------------------
    def check(self, refresh_descendants: bool = False) -> bool:
        """Notice processes that ended. True if any did."""
        changed = False
        for run, tracked in self.tracked.items():
            if not tracked.up:
                continue
            ended, code = self._ended(tracked)
            if ended:
                tracked.up = False
                tracked.exit_code = code
                tracked.ended = self.clock()
                changed = True
                log.info("run %s: training process %d ended (exit code %s)", run, tracked.pid,
                         "unknown" if code is None else code)
            elif refresh_descendants:
                self._refresh_descendants(tracked)
        return changed

    def _ended(self, tracked: Tracked) -> tuple[bool, int | None]:
        ps = self.psutil
        proc = tracked.handle
        if proc is None:
            return False, None
        if not tracked.external:
            try:
                code = proc.wait(timeout=0)  # our child: its exit code; another's: None once gone
                return True, code
            except ps.TimeoutExpired:
                pass
            except ps.NoSuchProcess:
                return True, None
        try:
            if proc.create_time() != tracked.create_time:
                return True, None  # the PID was reused
            if proc.status() == ps.STATUS_ZOMBIE:
                return True, None
        except ps.NoSuchProcess:
            return True, None
        except ps.AccessDenied:
            pass
        return False, None

    def document(self, run: str) -> ProcessInfo | None:
        tracked = self.tracked.get(run)
        return tracked.document() if tracked else None
