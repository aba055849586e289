"""A small on-disk outbox: one JSON file per (message, target), written atomically; delivered with back-off;
deleted once the target took it. An agent restart or a target down for hours loses nothing, and a journal of
delivered ids keeps a message that is enqueued again (a crash between enqueue and the tracker's save) from going
out twice."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import deque
from pathlib import Path

BACKOFF_SECONDS = (2, 5, 10, 20, 30, 60)  # at most a minute: a target that is back gets the backlog soon
DELIVERED_JOURNAL = 10000


def _atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._journal_path = self.dir / "delivered.journal"
        self._delivered: deque[str] = deque(maxlen=DELIVERED_JOURNAL)
        self._delivered_set: set[str] = set()
        try:
            for line in self._journal_path.read_text(encoding="utf-8").splitlines()[-DELIVERED_JOURNAL:]:
                self._remember(line.strip())
        except OSError:
            pass

    @staticmethod
    def file_id(message_id: str, target_id: str) -> str:
        return hashlib.sha256(f"{message_id}|{target_id}".encode()).hexdigest()[:24]

    def _remember(self, fid: str) -> None:
        if fid and fid not in self._delivered_set:
            if len(self._delivered) == self._delivered.maxlen:
                self._delivered_set.discard(self._delivered[0])
            self._delivered.append(fid)
            self._delivered_set.add(fid)

    def put(self, message_id: str, target_id: str, message: dict, now: float) -> bool:
        """Queue `message` for a target; False when this very message was queued or delivered before."""
        fid = self.file_id(message_id, target_id)
        path = self.dir / f"{fid}.json"
        with self._lock:
            if fid in self._delivered_set or path.exists():
                return False
            _atomic_write(path, {**message, "id": fid, "target": target_id, "created": now, "attempts": 0,
                                 "next_attempt": now})
        return True

    def pending(self) -> list[dict]:
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # half-written by a crash before os.replace: the .tmp is ignored, this is not
        out.sort(key=lambda m: (m.get("created", 0), m.get("id", "")))
        return out

    def due(self, now: float) -> list[dict]:
        return [m for m in self.pending() if m.get("next_attempt", 0) <= now]

    def delivered(self, message: dict) -> None:
        with self._lock:
            self._remember(message["id"])
            with self._journal_path.open("a", encoding="utf-8") as f:
                f.write(message["id"] + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                (self.dir / f"{message['id']}.json").unlink()
            except FileNotFoundError:
                pass
            self._compact_journal()

    def failed(self, message: dict, now: float, error: str) -> None:
        attempts = message.get("attempts", 0) + 1
        delay = BACKOFF_SECONDS[min(attempts - 1, len(BACKOFF_SECONDS) - 1)]
        message.update(attempts=attempts, next_attempt=now + delay, last_error=error[:500])
        with self._lock:
            path = self.dir / f"{message['id']}.json"
            if path.exists():
                _atomic_write(path, message)

    def drop(self, message: dict) -> None:
        try:
            (self.dir / f"{message['id']}.json").unlink()
        except FileNotFoundError:
            pass

    def _compact_journal(self) -> None:
        try:
            if self._journal_path.stat().st_size > DELIVERED_JOURNAL * 2 * 26:
                tmp = self._journal_path.with_suffix(".tmp")
                tmp.write_text("\n".join(self._delivered) + "\n", encoding="utf-8")
                os.replace(tmp, self._journal_path)
        except OSError:
            pass

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob("*.json"))
