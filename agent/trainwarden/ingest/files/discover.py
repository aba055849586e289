"""Find runs, their sessions and their checkpoints on disk.

- MMEngine:  work_dir/<ts>/<ts>.log, work_dir/<ts>/vis_data/scalars.json, work_dir/<ts>/<ts>.json (test dump)
- mmcv 2.x:  work_dir/<ts>.log, work_dir/<ts>.log.json
- both:      work_dir/epoch_N.pth, iter_N.pth, best_*.pth (before MMEngine 0.7.2 also best_coco/bbox_mAP_..pth,
             a sub-folder), latest.pth (mmcv, a link), last_checkpoint (MMEngine, the path of the last one)
A run is a work dir: every session (a resume writes a new <ts>/ or <ts>.log) folds into it, in time order.
A PATH may be a work dir, one of its session folders, or a folder holding work dirs (searched a few levels deep).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SESSION_NAME = re.compile(r"^\d{8}_\d{6}$")
MMCV_LOG = re.compile(r"^(\d{8}_\d{6})\.log$")
MMCV_JSON = re.compile(r"^(\d{8}_\d{6})\.log\.json$")
CONSOLE_LOG = re.compile(r"console.*\.(?:log|txt|out)$|\.console\.log$", re.IGNORECASE)
_CKPT_NUMBER = re.compile(r"(?:^|_)(epoch|iter)_(\d+)\.pth$")
MAX_DEPTH = 4
MAX_ENTRIES_PER_DIR = 20000


@dataclass
class SessionFiles:
    id: str  # the session's timestamp name, which sorts in time order
    log: Path | None = None  # the text log: the authority when present
    json: Path | None = None  # scalars.json (MMEngine) or .log.json (mmcv): used only without a text log
    json_kind: str | None = None  # "scalars" or "mmcv_json"
    test_dump: Path | None = None


@dataclass
class RunLayout:
    name: str
    work_dir: Path
    framework: str  # "mmengine", "mmcv" or "unknown"
    sessions: list[SessionFiles] = field(default_factory=list)
    consoles: list[Path] = field(default_factory=list)
    config_file: Path | None = None


def _entries(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            out = []
            for entry in it:
                out.append(entry)
                if len(out) >= MAX_ENTRIES_PER_DIR:
                    break
            return out
    except OSError:
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def is_session_dir(path: Path) -> bool:
    if not SESSION_NAME.match(path.name):
        return False
    return (path / f"{path.name}.log").is_file() or (path / "vis_data").is_dir() or (path / f"{path.name}.json").is_file()


def is_work_dir(path: Path) -> bool:
    for entry in _entries(path):
        if SESSION_NAME.match(entry.name) and _is_dir(entry) and is_session_dir(Path(entry.path)):
            return True
        if (MMCV_LOG.match(entry.name) or MMCV_JSON.match(entry.name)) and _is_file(entry):
            return True
    return False


def find_work_dirs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Work dirs at or below `root` (a session folder counts as its work dir)."""
    root = Path(root)
    if not root.is_dir():
        return []
    if is_session_dir(root) and is_work_dir(root.parent):
        return [root.parent]
    found: list[Path] = []
    frontier = [root]
    for _ in range(max_depth + 1):
        next_frontier = []
        for d in frontier:
            if is_work_dir(d):
                found.append(d)
                continue
            for entry in _entries(d):
                if _is_dir(entry) and not entry.name.startswith(".") and entry.name != "__pycache__":
                    next_frontier.append(Path(entry.path))
        frontier = next_frontier
        if not frontier:
            break
    return sorted(found)


def describe(work_dir: Path, name: str | None = None) -> RunLayout:
    """The sessions, console captures and config copy of one work dir."""
    sessions: dict[str, SessionFiles] = {}
    consoles: list[Path] = []
    configs: list[tuple[float, Path]] = []
    mmengine = mmcv = False
    for entry in _entries(work_dir):
        path = Path(entry.path)
        if SESSION_NAME.match(entry.name) and _is_dir(entry):
            s = SessionFiles(entry.name)
            log = path / f"{entry.name}.log"
            scalars = path / "vis_data" / "scalars.json"
            dump = path / f"{entry.name}.json"
            s.log = log if log.is_file() else None
            if scalars.is_file():
                s.json, s.json_kind = scalars, "scalars"
            s.test_dump = dump if dump.is_file() else None
            if s.log or s.json or s.test_dump:
                sessions[entry.name] = s
                mmengine = True
            continue
        if not _is_file(entry):
            continue
        m = MMCV_LOG.match(entry.name)
        if m:
            sessions.setdefault(m[1], SessionFiles(m[1])).log = path
            mmcv = True
            continue
        m = MMCV_JSON.match(entry.name)
        if m:
            s = sessions.setdefault(m[1], SessionFiles(m[1]))
            s.json, s.json_kind = path, "mmcv_json"
            mmcv = True
            continue
        if CONSOLE_LOG.search(entry.name):
            consoles.append(path)
        elif entry.name.endswith(".py"):
            try:
                configs.append((entry.stat().st_mtime, path))
            except OSError:
                pass
    framework = "mmengine" if mmengine else ("mmcv" if mmcv else "unknown")
    return RunLayout(
        name=name or work_dir.name,
        work_dir=work_dir,
        framework=framework,
        sessions=[sessions[k] for k in sorted(sessions)],
        consoles=sorted(consoles),
        config_file=max(configs)[1] if configs else None,
    )


def newest_log(layout: RunLayout) -> Path | None:
    """The text log of the run's newest session that has one (what `tail` shows)."""
    for session in reversed(layout.sessions):
        if session.log is not None:
            return session.log
    return None


def run_names(work_dirs: list[Path]) -> dict[Path, str]:
    """A unique `run` label per work dir: its name, or parent/name where two work dirs share a name."""
    by_name: dict[str, list[Path]] = {}
    for wd in work_dirs:
        by_name.setdefault(wd.name, []).append(wd)
    out = {}
    for name, dirs in by_name.items():
        for wd in dirs:
            out[wd] = name if len(dirs) == 1 else f"{wd.parent.name}/{name}"
    return out


def _checkpoint_entry(path: Path, rel: str) -> dict | None:
    try:
        st = path.stat()
    except OSError:
        return None  # a dangling latest.pth link, or removed meanwhile
    name = path.name if not path.is_symlink() else Path(os.readlink(path)).name
    m = _CKPT_NUMBER.search(name)
    unit, number = (m[1], int(m[2])) if m else (None, None)
    return {
        "file": rel,
        "epoch": number if unit == "epoch" else None,
        "iteration": number if unit == "iter" else None,
        "bytes": st.st_size,
        "mtime": st.st_mtime,
        "best": rel.startswith("best_"),
        "link": rel == "latest.pth",
    }


def list_checkpoints(work_dir: Path, extra_dir: Path | None = None) -> tuple[list[dict], str | None]:
    """Checkpoint files (oldest first) and the content of `last_checkpoint`."""
    found: list[dict] = []
    dirs = [work_dir]
    if extra_dir is not None and extra_dir != work_dir and extra_dir.is_dir():
        dirs.append(extra_dir)
    for base in dirs:
        for entry in _entries(base):
            path = Path(entry.path)
            if entry.name.endswith(".pth") and (_is_file(entry) or path.is_symlink()):
                item = _checkpoint_entry(path, entry.name)
            elif entry.name.startswith("best_") and _is_dir(entry):  # pre-0.7.2 `best_coco/bbox_mAP_epoch_10.pth`
                for sub in _entries(path):
                    if sub.name.endswith(".pth"):
                        item = _checkpoint_entry(Path(sub.path), f"{entry.name}/{sub.name}")
                        if item:
                            found.append(item)
                continue
            else:
                continue
            if item:
                found.append(item)
    found.sort(key=lambda c: (c["mtime"], c["file"]))
    last = None
    try:
        last = (work_dir / "last_checkpoint").read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        pass
    return found, last
