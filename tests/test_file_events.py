"""inotify file events without watchdog (ingest/files/events.py): real folders, real writes, one thread."""

from __future__ import annotations

import os
import shutil
import struct
import threading

import pytest
from conftest import wait_for

from trainwarden.ingest.files import events
from trainwarden.ingest.files.events import IN_Q_OVERFLOW, InotifyWatcher

pytestmark = pytest.mark.skipif(not events.available(), reason="inotify is Linux's; elsewhere the agent uses watchdog")


class Seen:
    """The paths the watcher handed on, from its thread."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, path: str) -> None:
        with self.lock:
            self.paths.append(path)

    def has(self, path) -> bool:
        with self.lock:
            return str(path) in self.paths

    def clear(self) -> None:
        with self.lock:
            self.paths.clear()


@pytest.fixture
def watched(tmp_path):
    root = tmp_path / "work_dirs"
    (root / "run" / "20251111_180600").mkdir(parents=True)
    seen = Seen()
    watcher = InotifyWatcher([root], seen)
    watcher.start()
    yield root, seen, watcher
    watcher.stop()
    watcher.join(timeout=5)


def test_a_line_appended_deep_in_the_tree_is_reported(watched):
    root, seen, _ = watched
    log = root / "run" / "20251111_180600" / "20251111_180600.log"
    log.write_text("first\n", encoding="utf-8")
    wait_for(lambda: seen.has(log))
    seen.clear()
    with log.open("a", encoding="utf-8") as f:
        f.write("second\n")
    wait_for(lambda: seen.has(log))


def test_a_new_session_folder_is_watched_at_once(watched):
    """A resume writes a new <ts>/ folder, then its log: the folder is reported, and so is each write in it."""
    root, seen, _ = watched
    session = root / "run" / "20251112_090000"
    (session / "vis_data").mkdir(parents=True)
    wait_for(lambda: seen.has(session))
    scalars = session / "vis_data" / "scalars.json"
    scalars.write_text("{}\n", encoding="utf-8")
    wait_for(lambda: seen.has(scalars))


def test_deletes_and_moves_are_reported_and_a_moved_folder_is_followed(watched):
    root, seen, watcher = watched
    ckpt = root / "run" / "epoch_1.pth"
    ckpt.write_bytes(b"x")
    wait_for(lambda: seen.has(ckpt))
    seen.clear()
    ckpt.unlink()
    wait_for(lambda: seen.has(ckpt))
    old, new = root / "run", root / "run_renamed"
    old.rename(new)
    wait_for(lambda: seen.has(old) and seen.has(new))
    log = new / "20251111_180600" / "x.log"
    log.write_text("line\n", encoding="utf-8")
    wait_for(lambda: seen.has(log))  # the moved tree is watched under its new name
    shutil.rmtree(new)
    wait_for(lambda: watcher.watched_folders == 1)  # only the root is left


def test_hidden_folders_are_not_watched(watched):
    root, seen, watcher = watched
    hidden = root / "run" / ".trainwarden-outbox"
    hidden.mkdir()
    wait_for(lambda: seen.has(hidden))  # reported (the agent drops it), never watched
    before = watcher.watched_folders
    (hidden / "message.json").write_text("{}", encoding="utf-8")
    marker = root / "run" / "marker"
    marker.write_text("x", encoding="utf-8")
    wait_for(lambda: seen.has(marker))  # later than the hidden write, in the same order
    assert not seen.has(hidden / "message.json")
    assert watcher.watched_folders == before


def test_one_read_reports_each_path_once_and_an_overflow_reports_every_root(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    watcher = InotifyWatcher([root], lambda path: None)
    try:
        wd = next(iter(watcher._folders))
        name = b"x.log".ljust(16, b"\0")
        modify = struct.pack("iIII", wd, events.IN_MODIFY, 0, len(name)) + name
        assert watcher.changed_paths(modify * 3) == [os.path.join(str(root), "x.log")]
        assert watcher.changed_paths(struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0)) == [str(root)]
    finally:
        watcher.join(timeout=1)


def test_a_root_that_cannot_be_watched_is_an_error(tmp_path):
    with pytest.raises(OSError):
        InotifyWatcher([tmp_path / "missing"], lambda path: None)


def test_stop_ends_the_thread_and_closes_the_descriptor(tmp_path):
    watcher = InotifyWatcher([tmp_path], lambda path: None)
    watcher.start()
    fd = watcher._fd
    watcher.stop()
    watcher.join(timeout=5)
    assert not watcher._thread.is_alive()
    try:
        still = os.readlink(f"/proc/self/fd/{fd}")  # the number may already be someone else's
    except OSError:
        still = None
    assert still != "anon_inode:inotify"


def test_without_a_thread_the_worker_waits_itself_and_stop_wakes_it(tmp_path):
    log = tmp_path / "run" / "x.log"
    log.parent.mkdir()
    watcher = InotifyWatcher([tmp_path])
    try:
        assert watcher.wait(0.05) == []  # nothing within the timeout
        log.write_text("line\n", encoding="utf-8")
        assert str(log) in wait_for(lambda: watcher.wait(1.0))
        woke = []
        waiter = threading.Thread(target=lambda: woke.append(watcher.wait(None)))
        waiter.start()
        watcher.stop()
        waiter.join(timeout=5)
        assert woke == [[]] and watcher.stopped
        assert watcher.wait(None) == []  # stopped: returns at once
    finally:
        watcher.join(timeout=1)


def test_without_modifications_only_files_that_appear_or_go_are_reported(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("first\n", encoding="utf-8")
    watcher = InotifyWatcher([tmp_path], modifications=False)
    try:
        with log.open("a", encoding="utf-8") as f:
            f.write("second\n")
        marker = tmp_path / "marker"
        marker.write_text("x", encoding="utf-8")
        seen = wait_for(lambda: watcher.wait(1.0))
        assert str(marker) in seen and str(log) not in seen  # the append came first, and was not reported
    finally:
        watcher.join(timeout=1)
