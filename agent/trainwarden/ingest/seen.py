"""When this host's agents first read each run, kept across restarts in the state folder.

A run already quiet for longer than `history_after_seconds` when an agent first reads it is history: shown, never
paged (judge/lifecycle.py). "First" must survive a restart of the agent: a run that crashed while watched, and
paged, must not turn into history (its red resolved, silently) because the agent was restarted two days later.
Keys are hashes of the resolved work dirs (no path in the state file); several agents of a host share the file
(each write merges what is on disk, the earliest time wins). A disk that refuses the write keeps the times in
memory and counts the refusal; nothing here may stop the agent.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import zlib
from pathlib import Path

log = logging.getLogger("trainwarden.seen")

MAX_RUNS = 20000  # beyond this the oldest entries go: a bounded file whatever the fleet's history


def run_key(work_dir: Path | str) -> str:
    """64 bits of the resolved path (two checksums: hashlib would load OpenSSL, ~5 MiB resident, for this)."""
    raw = os.path.realpath(os.fspath(work_dir)).encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"


class FirstSeen:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.write_errors = 0
        self._lock = threading.Lock()
        self._times: dict[str, float] = self._read()

    def _read(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a damaged file: start afresh, say so once
            log.warning("%s: unreadable (%s); runs are first seen now", self.path, type(exc).__name__)
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: float(v) for k, v in data.items()
                if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}

    def first_seen(self, work_dir: Path | str, now: float) -> float:
        """When a run was first read on this host: the recorded time, or `now` (recorded)."""
        key = run_key(work_dir)
        with self._lock:
            known = self._times.get(key)
            if known is not None and known <= now:
                return known
            self._times[key] = now
            self._save()
            return now

    def _save(self) -> None:
        disk = self._read()
        merged = {**disk, **self._times}
        for key, value in disk.items():  # another agent's earlier time wins
            merged[key] = min(value, merged[key])
        if len(merged) > MAX_RUNS:
            merged = dict(sorted(merged.items(), key=lambda kv: kv[1])[-MAX_RUNS:])
        self._times = merged
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(merged), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1:
                log.warning("%s: cannot write (%s); first-seen times kept in memory", self.path, exc.strerror or exc)
