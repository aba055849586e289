"""Find each run's training process without being told, follow it, and notice how it ends.

A process belongs to a run when the config names its PID, or it is a Python training command that names the run's
work dir, or it holds one of the run's logs open for writing (MMEngine's and mmcv's log handlers keep it open).
A command line names the work dir with `--work-dir X` / `--work-dir=X` (or `work_dir=X` in `--cfg-options`);
without one, with the `work_dir` its config set (as the config dump in the log says, when the process names a
config of the dump's file name), else with MMEngine's and mmcv's default `work_dirs/<config stem>`; a relative one
is resolved against the process's own working folder, and the resolved paths are compared (so two trainings of one
config, from two folders or with two work dirs, are two runs with their own processes). A config's file name alone
never makes a process a run's: a `sleep`, a `tools/test.py`, `print_config.py` or `browse_dataset.py` naming it
is not training. Launchers (`torchrun`, `python -m torch.distributed.launch` / `.run`, what `dist_train.sh`
starts) are read through to the script they start. Of several matching processes the top-most wins (DataLoader
workers and torchrun ranks are its descendants, and a training's former descendants are never taken for a new
one). Its descendants are listed so GPU processes can be mapped to runs. When it ends, the time is kept and the
exit code when this process is its parent (`trainwarden run`); otherwise the exit code is unknown (None).

Only process ids, names and times leave this module: command lines can hold secrets.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PureWindowsPath

from trainwarden.ingest.host.cmdline import TrainingCommand, is_python, training_command, work_dir_candidates
from trainwarden.model import ProcessInfo

log = logging.getLogger("trainwarden.process")


@dataclass
class RunTarget:
    run: str
    work_dir: Path
    logs: list[Path] = field(default_factory=list)
    config_name: str | None = None  # the config copy MMEngine writes into the work dir
    pid: int | None = None  # given in the config file
    configured_work_dir: str | None = None  # `work_dir = ...` of the config dump in the log, as the trainer saw it


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


def path_key(path: PurePath) -> str:
    """A path as compared: absolute, resolved, in the OS's case (Windows compares without case)."""
    try:
        resolved = Path(path).resolve(strict=False)
    except (OSError, RuntimeError):  # a link loop
        resolved = Path(os.path.abspath(path))
    return os.path.normcase(str(resolved))


def _absolute(written: str, cwd: Callable[[], str | None]) -> Path | None:
    """A path as the process wrote it, against its own working folder (None: relative, and the folder unknown)."""
    path = Path(PureWindowsPath(written)) if sys.platform == "win32" else Path(written)
    if path.is_absolute():
        return path
    folder = cwd()
    return Path(folder) / path if folder else None


class CommandLines:
    """What each process's command line says, read once per search for all the runs looked for: the training it
    runs, its working folder (read only when a relative path needs it) and the paths it names, resolved once."""

    def __init__(self, psutil_module) -> None:
        self.psutil = psutil_module
        self._commands: dict[int, TrainingCommand | None] = {}
        self._cwds: dict[int, str | None] = {}
        self._keys: dict[tuple[int, str], tuple[str, str] | None] = {}

    def command(self, pid: int, cmdline: list[str]) -> TrainingCommand | None:
        if pid not in self._commands:
            self._commands[pid] = training_command(cmdline) if _could_name_work_dir(cmdline) else None
        return self._commands[pid]

    def _cwd(self, pid: int, proc) -> str | None:
        if pid not in self._cwds:
            try:
                self._cwds[pid] = proc.cwd()
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, OSError):
                self._cwds[pid] = None  # another user's process: only an absolute work dir can name the run
        return self._cwds[pid]

    def keys(self, pid: int, proc, written: str) -> tuple[str, str] | None:
        """(the path as written, made absolute; resolved) in the OS's case, or None (relative, cwd unknown)."""
        if (pid, written) not in self._keys:
            path = _absolute(written, lambda: self._cwd(pid, proc))
            self._keys[pid, written] = None if path is None else (os.path.normcase(os.path.normpath(path)),
                                                                   path_key(path))
        return self._keys[pid, written]

    def names_work_dir(self, pid: int, proc, cmdline: list[str], target: RunTarget, want: set[str]) -> str | None:
        """`cmdline_work_dir` when the command line trains into the run's work dir (`want`: its path keys)."""
        command = self.command(pid, cmdline)
        if command is None:
            return None
        for written in work_dir_candidates(command, target.config_name, target.configured_work_dir):
            keys = self.keys(pid, proc, written)
            if keys is None:
                continue
            if keys[0] in want or keys[1] in want:
                return "cmdline_work_dir"
            if keys[1].rsplit(os.sep, 1)[-1].lower() == target.work_dir.name.lower():
                try:  # a case-insensitive disk (macOS)
                    if os.path.samefile(keys[1], target.work_dir):
                        return "cmdline_work_dir"
                except OSError:
                    continue
        return None


def work_dir_keys(work_dir: Path) -> set[str]:
    return {os.path.normcase(os.path.normpath(Path(work_dir).absolute())), path_key(work_dir)}


def _could_name_work_dir(cmdline: list[str]) -> bool:
    """Cheap first look (no cwd read): a Python command line with a `.py` argument or a work dir option."""
    return is_python(cmdline) and any(a.endswith(".py") or "work_dir" in a or "work-dir" in a for a in cmdline[1:])


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
        self._former: dict[str, tuple[set[int], float]] = {}  # run -> (pids of its ended training, when it ended)

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
        commands = CommandLines(self.psutil)
        for target in wanted:
            found = self._match(target, candidates, open_files, commands)
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
        if tracked is not None and (tracked.up or tracked.external):
            return False  # `trainwarden run`'s child is the run's process, alive or not: its next attempt is adopted
        key = (tuple(target.logs), target.config_name, target.pid)
        if self._searched.get(target.run) != key:  # never looked for, or a new session or PID since
            self._searched[target.run] = key
            self._misses.pop(target.run, None)
            return True
        if now < self._next_search.get(target.run, 0.0):
            return False
        return _written_since(target.logs, now - SEARCH_WHILE_WRITTEN_SECONDS)

    def _match(self, target: RunTarget, candidates: dict, open_files: dict[int, set[str]],
               commands: CommandLines) -> tuple[object, str] | None:
        if target.pid is not None:
            try:
                return self.psutil.Process(target.pid), "config_pid"
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                return None
        former = self._former.get(target.run, (set(), 0.0))
        matches: dict[int, tuple[object, str]] = {}
        want = work_dir_keys(target.work_dir)
        for pid, (proc, cmdline) in candidates.items():
            how = commands.names_work_dir(pid, proc, cmdline, target, want)
            if how:
                matches[pid] = (proc, how)
        if not matches:
            logs = {path_key(p) for p in target.logs}
            for pid, (proc, cmdline) in candidates.items():
                held = self._open_files(pid, proc, cmdline, open_files)
                if held and not held.isdisjoint(logs):
                    matches[pid] = (proc, "open_log")
        for pid in [pid for pid in matches if pid in former[0] and self._started_before(matches[pid][0], former[1])]:
            del matches[pid]  # a worker of the training that ended (it outlives it a moment): not a new training
        # the top-most match: its parent is not a match too
        for _pid, (proc, how) in sorted(matches.items()):
            if self._parent(proc) not in matches:
                return proc, how
        return None

    def _started_before(self, proc, when: float) -> bool:
        try:
            return proc.create_time() <= when
        except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
            return True

    def _open_files(self, pid: int, proc, cmdline: list[str], cache: dict[int, set[str]]) -> set[str]:
        """The files a Python process holds open for writing (a reader, or another program, is not the trainer):
        read once per search. psutil knows the mode on Linux only; elsewhere every open file counts."""
        if pid not in cache:
            cache[pid] = set()
            try:
                if is_python(cmdline):
                    trainer = training_command(cmdline) is not None  # not one of the tools that read a config
                else:
                    trainer = "python" in (proc.name() or "").lower()  # a frozen or renamed interpreter
                if trainer:
                    cache[pid] = {path_key(Path(f.path)) for f in proc.open_files() if getattr(f, "mode", "a") != "r"}
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
                self._former[run] = (set(tracked.pids), tracked.ended)
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
