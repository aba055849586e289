"""A small on-disk outbox: one JSON file per (message, target), written atomically; delivered with back-off;
deleted once the target took it. An agent restart or a target down for hours loses nothing, and a journal of
delivered ids keeps a message that is enqueued again (a crash between enqueue and the tracker's save) from going
out twice.

When the disk refuses a write (full, read-only, quota), the message is held in memory, delivered from there, and
written out as soon as the disk takes it again: a full disk delays nothing and loses nothing unless the agent is
also killed meanwhile. Each refused write is counted (`write_errors`, exported) and logged once per episode."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import deque
from pathlib import Path

log = logging.getLogger("trainwarden.notify")
BACKOFF_SECONDS = (2, 5, 10, 20, 30, 60)  # at most a minute: a target that is back gets the backlog soon
DELIVERED_JOURNAL = 10000


def atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()  # a half-written temporary would hold on to the little space there is
        except OSError:
            pass
        raise


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._journal_path = self.dir / "delivered.journal"
        self._delivered: deque[str] = deque(maxlen=DELIVERED_JOURNAL)
        self._delivered_set: set[str] = set()
        self._held: dict[str, dict] = {}  # messages the disk refused, by file id
        self._journal_unsaved: list[str] = []  # delivered ids the journal could not take yet
        self.write_errors = 0
        self._failing = False
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

    def _write_failed(self, what: str, exc: OSError) -> None:
        self.write_errors += 1
        if not self._failing:
            self._failing = True
            log.warning("cannot write the notification outbox in %s (%s): holding messages in memory until it can",
                        self.dir, exc.strerror or exc)

    def _write_ok(self) -> None:
        if self._failing:
            self._failing = False
            log.info("the notification outbox in %s is writable again", self.dir)

    def _save(self, message: dict) -> None:
        """Write a message to disk, or hold it in memory (lock held)."""
        try:
            atomic_write(self.dir / f"{message['id']}.json", message)
        except OSError as exc:
            self._held[message["id"]] = message
            self._write_failed("message", exc)
            return
        self._held.pop(message["id"], None)
        self._write_ok()

    def put(self, message_id: str, target_id: str, message: dict, now: float) -> bool:
        """Queue `message` for a target; False when this very message was queued or delivered before."""
        fid = self.file_id(message_id, target_id)
        path = self.dir / f"{fid}.json"
        with self._lock:
            if fid in self._delivered_set or fid in self._held or path.exists():
                return False
            # message_id kept: a message whose target left the config can be put for the targets that replaced it
            self._save({**message, "id": fid, "message_id": message_id, "target": target_id, "created": now,
                        "attempts": 0, "next_attempt": now})
        return True

    def retry_writes(self) -> None:
        """Write out what the disk refused before (called by the delivery loop)."""
        with self._lock:
            for message in list(self._held.values()):
                self._save(message)
                if self._failing:
                    return
            if self._journal_unsaved:
                self._append_journal([])

    def pending(self) -> list[dict]:
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # half-written by a crash before os.replace: the .tmp is ignored, this is not
        with self._lock:  # a held copy is newer than the one on disk (its back-off could not be written)
            out = [m for m in out if m.get("id") not in self._held] + [dict(m) for m in self._held.values()]
        out.sort(key=lambda m: (m.get("created", 0), m.get("id", "")))
        return out

    def _append_journal(self, ids: list[str]) -> None:
        self._journal_unsaved.extend(ids)
        try:
            with self._journal_path.open("a", encoding="utf-8") as f:
                f.write("".join(i + "\n" for i in self._journal_unsaved))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            self._write_failed("journal", exc)  # remembered in memory: no resend while the agent lives
            return
        self._journal_unsaved = []

    def delivered(self, message: dict) -> None:
        with self._lock:
            self._remember(message["id"])
            self._append_journal([message["id"]])
            self._held.pop(message["id"], None)
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
            if message["id"] in self._held or (self.dir / f"{message['id']}.json").exists():
                self._save(message)

    def drop(self, message: dict) -> None:
        with self._lock:
            self._held.pop(message["id"], None)
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
        with self._lock:
            held = set(self._held)
        return len(held | {p.stem for p in self.dir.glob("*.json")})
