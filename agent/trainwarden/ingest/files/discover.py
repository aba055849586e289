"""Find runs, their sessions and their checkpoints on disk.

Which files a work dir holds, and to which session each belongs, is the formats' to say (parse/formats/: MMEngine
writes work_dir/<ts>/<ts>.log, <ts>/vis_data/scalars.json and <ts>/<ts>.json; mmcv work_dir/<ts>.log and
<ts>.log.json); this module only lists folders for them and folds what they find into a RunLayout.
- Checkpoints (both): work_dir/epoch_N.pth, iter_N.pth, best_*.pth (before MMEngine 0.7.2 also
  best_coco/bbox_mAP_..pth, a sub-folder), latest.pth (mmcv, a link), last_checkpoint (MMEngine, the path of the
  last one).
A run is a work dir: a folder where some format finds a session's file. Every session (a resume writes a new
<ts>/ or <ts>.log) folds into it, in time order. A PATH may be a work dir, one of its session folders, or a folder
holding work dirs (searched a few levels deep). A capture of a training's stdout (slurm, nohup, tee: a file of
OpenMMLab lines, told by its content) outside any work dir is a run by itself, its path standing for the work dir;
inside one, or beside or above the work dir it names, it adds that run's errors (console_capture).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from trainwarden.parse.formats import FORMATS
from trainwarden.parse.formats.base import FIRST_BYTES, SESSION_ID, Format, Role
from trainwarden.parse.formats.training_capture import FORMAT as CAPTURE
from trainwarden.parse.formats.training_capture import capture_framework, is_capture_name

_CKPT_NUMBER = re.compile(r"(?:^|_)(epoch|iter)_(\d+)\.pth$")
MAX_DEPTH = 4
MAX_ENTRIES_PER_DIR = 20000


@dataclass(frozen=True)
class FormatFile:
    path: Path
    format: Format


@dataclass
class SessionFiles:
    id: str  # the session's timestamp name, which sorts in time order
    files: dict[Role, FormatFile] = field(default_factory=dict)  # one file a role: the first format to claim it

    def _path(self, role: Role) -> Path | None:
        found = self.files.get(role)
        return found.path if found is not None else None

    @property
    def log(self) -> Path | None:
        """The text log: the authority when present."""
        return self._path(Role.LOG)

    @property
    def json(self) -> Path | None:
        """scalars.json (MMEngine) or .log.json (mmcv): used only without a text log."""
        return self._path(Role.JSON)

    @property
    def json_kind(self) -> str | None:
        found = self.files.get(Role.JSON)
        return found.format.name if found is not None else None

    @property
    def test_dump(self) -> Path | None:
        return self._path(Role.DUMP)


@dataclass
class RunLayout:
    name: str
    work_dir: Path
    framework: str  # "mmengine", "mmcv" or "unknown"
    sessions: list[SessionFiles] = field(default_factory=list)
    run_files: list[FormatFile] = field(default_factory=list)  # files of the whole run: console captures
    config_file: Path | None = None
    formats: tuple[Format, ...] = FORMATS  # what it was described with: the run's next look uses them again


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


class _DirView:
    """A WorkDirView of one folder: listed once, its entries' types from the listing, first bytes read once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries = {e.name: e for e in _entries(path)}
        self._names = list(self.entries)
        self._first: dict[str, bytes] = {}
        self._inside: dict[str, list[str]] = {}

    def names(self) -> list[str]:
        return self._names

    def names_in(self, folder: str) -> list[str]:
        if folder not in self._inside:
            self._inside[folder] = [e.name for e in _entries(self.path / folder)]
        return self._inside[folder]

    def is_dir(self, path: str) -> bool:
        entry = self.entries.get(path)
        if entry is not None:
            return _is_dir(entry)
        try:
            return "/" in path and (self.path / path).is_dir()
        except OSError:  # a folder we may not enter
            return False

    def is_file(self, path: str) -> bool:
        entry = self.entries.get(path)
        if entry is not None:
            return _is_file(entry)
        try:
            return "/" in path and (self.path / path).is_file()
        except OSError:
            return False

    def first_bytes(self, path: str) -> bytes:
        if path not in self._first:
            try:
                with (self.path / path).open("rb") as f:
                    self._first[path] = f.read(FIRST_BYTES)
            except OSError:
                self._first[path] = b""
        return self._first[path]


def _holds_sessions(view: _DirView, formats: tuple[Format, ...]) -> bool:
    """The folder is a work dir: some format finds a session's file in it."""
    return any(found.session is not None for fmt in formats for found in fmt.find_files(view))


def _session_folder_of(root: Path, formats: tuple[Format, ...]) -> bool:
    """`root` is a folder inside its parent's work dir that holds a session's files (MMEngine's `<ts>/`)."""
    view = _DirView(root.parent)
    prefix = root.name + "/"
    return any(found.session is not None and found.path.startswith(prefix)
               for fmt in formats for found in fmt.find_files(view))


def _is_session_folder(folder: Path, formats: tuple[Format, ...], view: _DirView | None = None) -> bool:
    """`folder` is MMEngine's session folder of the work dir above it: named as a session (`<ts>`), it holds the
    log of that name, `<ts>/<ts>.log`. Told by its own listing: a training that starts while the walk runs (its
    work dir listed before the log existed, `<ts>/` after) cannot make it a run of its own. An mmcv work dir is
    never one: its logs are named by their own start, not by the folder's name."""
    if not SESSION_ID.match(folder.name):
        return False
    view = view if view is not None else _DirView(folder)
    log = f"{folder.name}.log"
    return any(found.session is not None and found.path == log for fmt in formats for found in fmt.find_files(view))


def excluded(path: Path, exclude: tuple[str, ...]) -> bool:
    """`path` is left out by a `discovery.exclude` glob: one matches its name or its whole path (`*` crosses `/`)."""
    if not exclude:
        return False
    name, whole = path.name, Path(path).as_posix()
    return any(fnmatch.fnmatch(name, glob) or fnmatch.fnmatch(whole, glob) for glob in exclude)


def _real(path: Path | str) -> str:
    return os.path.realpath(path)


MAX_SNIFFS_PER_DIR = 256  # files whose first bytes one look at a folder reads (a dataset's 10 000 label .txt: not all)
_NOT_CAPTURES: set[tuple[str, int]] = set()  # (path, inode) of full-sized files that are not captures
_NOT_CAPTURES_MAX = 200_000


def _capture_of(view: _DirView, entry: os.DirEntry, sniffed: list[int]) -> bool:
    """The file is a capture of OpenMMLab lines (a slurm, nohup or tee file). A file of FIRST_BYTES or more that is
    not one never becomes one (its first bytes are written), so it is read once, not at every look: known by its
    inode, which a folder's listing gives without a call per file (on Linux)."""
    if not is_capture_name(entry.name):
        return False
    try:
        key = (entry.path, entry.inode())
    except OSError:
        return False
    if key in _NOT_CAPTURES or sniffed[0] >= MAX_SNIFFS_PER_DIR:
        return False
    sniffed[0] += 1
    first = view.first_bytes(entry.name)
    if capture_framework(first) is not None:
        return True
    if len(first) >= FIRST_BYTES:
        if len(_NOT_CAPTURES) >= _NOT_CAPTURES_MAX:
            _NOT_CAPTURES.clear()
        _NOT_CAPTURES.add(key)
    return False


def _file_runs(path: Path, formats: tuple[Format, ...]) -> list[Path]:
    """What a FILE named as a PATH is: a session log names its work dir; a file of OpenMMLab lines, whatever its
    name, is a run by itself."""
    parent = path.parent
    view = _DirView(parent)
    for fmt in formats:
        for found in fmt.find_files(view):
            if found.session is not None and parent / found.path == path:
                return [parent.parent if _is_session_folder(parent, formats, view) else parent]
    return [path] if capture_framework(view.first_bytes(path.name)) is not None else []


def find_work_dirs(root: Path, max_depth: int = MAX_DEPTH, formats: tuple[Format, ...] = FORMATS,
                   exclude: tuple[str, ...] = ()) -> list[Path]:
    """Runs at or below `root`: work dirs (a session folder counts as its work dir), and captures outside any work
    dir (files of OpenMMLab lines: each a run by itself).

    A folder reached twice (a `latest -> stage2` link, a link loop, a link into another watched folder) is walked
    once, under its real name: folders are walked before links, and a link to a folder already walked is
    skipped. Folders and files an `exclude` glob matches are left out, with all they hold."""
    root = Path(root)
    if excluded(root, exclude):
        return []
    if root.is_file():
        return _file_runs(root, formats)
    if not root.is_dir():
        return []
    if _session_folder_of(root, formats):  # named by the user: whatever its name
        return [root.parent]
    found: list[Path] = []
    walked: set[str] = set()  # real paths of the folders walked, and of the captures found
    folders: deque[tuple[Path, int]] = deque([(root, 0)])
    links: deque[tuple[Path, int]] = deque()  # links to folders: walked last, when their target was not reached
    while folders or links:
        d, depth = folders.popleft() if folders else links.popleft()
        real = _real(d)
        if real in walked:
            continue
        walked.add(real)
        view = _DirView(d)
        if d != root and _is_session_folder(d, formats, view):
            # MMEngine's `<ts>/`, met when its work dir was listed before the session's log existed
            if d.parent not in found:
                found.append(d.parent)
            continue
        if _holds_sessions(view, formats):
            found.append(d)
            continue
        sniffed = [0]
        for name, entry in view.entries.items():
            if name.startswith(".") or name == "__pycache__" or (exclude and excluded(Path(entry.path), exclude)):
                continue
            if _is_dir(entry):
                if depth < max_depth:
                    (links if entry.is_symlink() else folders).append((Path(entry.path), depth + 1))
            elif _is_file(entry) and _capture_of(view, entry, sniffed):
                real_file = _real(entry.path)
                if real_file not in walked:
                    walked.add(real_file)
                    found.append(Path(entry.path))
    return sorted(found)


def _describe_capture(capture: Path, name: str | None, formats: tuple[Format, ...]) -> RunLayout:
    """A capture that is a run by itself: one session, its file read whole (progress, evaluations and errors)."""
    fmt = next((f for f in formats if f.name == CAPTURE.name), CAPTURE)
    framework = None
    try:
        with capture.open("rb") as f:
            framework = capture_framework(f.read(FIRST_BYTES))
    except OSError:
        pass
    session = SessionFiles(capture.name, {Role.LOG: FormatFile(capture, fmt)})
    return RunLayout(name=name or capture.name, work_dir=capture, framework=framework or "unknown",
                     sessions=[session], formats=formats)


_EMPTY_DUMP_BYTES = 64  # a `.py` this small is read to tell MMEngine's empty config dump (one newline) from a config


def describe(work_dir: Path, name: str | None = None, formats: tuple[Format, ...] = FORMATS) -> RunLayout:
    """The sessions, files of the whole run and config copy of one work dir, as `formats` find them. A capture
    that is a run by itself (find_work_dirs) is its own "work dir"."""
    if Path(work_dir).is_file():
        return _describe_capture(Path(work_dir), name, formats)
    view = _DirView(work_dir)
    sessions: dict[str, SessionFiles] = {}
    run_files: list[FormatFile] = []
    claimed: set[str] = set()
    framework = None
    for fmt in formats:
        for found in fmt.find_files(view):
            if found.path in claimed:
                continue  # an earlier format reads it
            file = FormatFile(work_dir / found.path, fmt)
            if found.session is None:
                run_files.append(file)
            else:
                session = sessions.setdefault(found.session, SessionFiles(found.session))
                if fmt.role in session.files:
                    continue
                session.files[fmt.role] = file
            claimed.add(found.path)
            framework = framework or fmt.framework
    configs: list[tuple[float, Path]] = []
    for entry_name, entry in view.entries.items():
        if entry_name.endswith(".py") and entry_name not in claimed and _is_file(entry):
            try:
                st = entry.stat()
                if st.st_size <= _EMPTY_DUMP_BYTES and not Path(entry.path).read_bytes().strip():
                    continue  # the dump of a Runner built in Python, which has no config: not one
                configs.append((st.st_mtime, Path(entry.path)))
            except OSError:
                pass
    return RunLayout(
        name=name or work_dir.name,
        work_dir=work_dir,
        framework=framework or "unknown",
        sessions=[sessions[k] for k in sorted(sessions)],
        run_files=sorted(run_files, key=lambda f: f.path),
        config_file=max(configs)[1] if configs else None,
        formats=formats,
    )


def newest_log(layout: RunLayout) -> Path | None:
    """The text log of the run's newest session that has one (what `tail` shows)."""
    for session in reversed(layout.sessions):
        if session.log is not None:
            return session.log
    return None


def run_names(work_dirs: list[Path]) -> dict[Path, str]:
    """A unique `run` label per work dir: its real name (a work dir watched through a `latest` link is named as
    its folder is), or parent/name where two work dirs share a name."""
    by_name: dict[str, list[Path]] = {}
    for wd in work_dirs:
        by_name.setdefault(Path(_real(wd)).name, []).append(wd)
    out = {}
    for name, dirs in by_name.items():
        for wd in dirs:
            out[wd] = name if len(dirs) == 1 else f"{Path(_real(wd)).parent.name}/{name}"
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
