"""File change events on Linux straight from inotify: one descriptor watching every folder under the roots, one
thread reading it and handing each changed path to a callback (the agent's queue).

Why not watchdog on Linux: it passes each event through three threads of its own (reader, emitter, dispatcher),
about twenty futex wake-ups and some hundred microseconds of Python per written line; with 8 runs writing a line a
second that was a third of the agent's CPU (bench/peer_figures.py). Elsewhere (macOS, Windows) watchdog stays.

Paths handed on: a file created, written, deleted or moved in or out of a watched folder; a folder created or moved
in (then watched too, its whole tree); a watched folder deleted or moved away; every root when the kernel's queue
overflowed (events were lost: the agent looks at everything again). Folders whose name starts with a dot are not
watched: the agent never reads them (a notification outbox, an editor's swap files).
"""

from __future__ import annotations

import errno
import os
import select
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

IN_MODIFY = 0x00000002
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK if hasattr(os, "O_NONBLOCK") else 0
IN_CLOEXEC = 0o2000000
# only changes: opens, reads and closes (our own reads among them) are never even reported by the kernel
WATCH_MASK = IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)
READ_BYTES = 64 * 1024


def available() -> bool:
    return sys.platform.startswith("linux")


class InotifyWatcher:
    """`start()`, then `on_path(path)` is called from its thread for each change; `stop()` and `join()` end it.
    Or no thread: the caller's worker loop calls `wait(timeout)` itself (`on_path` unused); `stop()` wakes it.

    Raises OSError when inotify cannot be set up (no inotify, or the watch limit reached while watching the roots):
    the caller then polls instead."""

    def __init__(self, roots: list[Path], on_path: Callable[[str], object] | None = None,
                 modifications: bool = True) -> None:
        import ctypes  # here: only Linux needs it

        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on (glibc or musl)
        self._ctypes = ctypes
        self._add_watch = libc.inotify_add_watch
        self._add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add_watch.restype = ctypes.c_int
        self._rm_watch = libc.inotify_rm_watch
        self._rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self._rm_watch.restype = ctypes.c_int
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe()
        self.roots = [str(Path(r).absolute()) for r in roots]
        self.on_path = on_path
        self._folders: dict[int, str] = {}  # watch descriptor -> folder
        # without `modifications`: files and folders that appear, go or move, not each write (a reader that reads on
        # demand only needs to know of new runs and sessions)
        self._mask = WATCH_MASK if modifications else WATCH_MASK & ~IN_MODIFY
        self._thread: threading.Thread | None = None
        self.stopped = False  # `stop()` was called (or the descriptor failed): `wait` returns at once from now on
        try:
            for root in self.roots:
                self._watch_tree(root, strict=True)
        except OSError:
            self._close()
            raise

    @property
    def watched_folders(self) -> int:
        return len(self._folders)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="file-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return
        self._close()

    def _close(self) -> None:
        for fd in (self._fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._fd = self._wake_r = self._wake_w = -1

    # -- watching --------------------------------------------------------------------------------------------
    def _watch_tree(self, top: str, strict: bool = False) -> None:
        """Watch `top` and every folder below it (hidden ones left out). With `strict` (the roots, at the start) a
        folder that cannot be watched is an error, but for one that vanished meanwhile; later it is skipped: the
        agent's safety poll covers it."""
        self._watch(top, strict, missing_ok=not strict)
        for folder, subfolders, _ in os.walk(top):
            subfolders[:] = [s for s in subfolders if not s.startswith(".")]
            for sub in subfolders:
                self._watch(os.path.join(folder, sub), strict, missing_ok=True)

    def _watch(self, folder: str, strict: bool, missing_ok: bool) -> None:
        wd = self._add_watch(self._fd, os.fsencode(folder), self._mask)
        if wd < 0:
            code = self._ctypes.get_errno()
            if strict and not (missing_ok and code == errno.ENOENT):  # ENOSPC: max_user_watches reached
                raise OSError(code, f"inotify_add_watch {folder}: {os.strerror(code)}")
            return
        self._folders[wd] = folder  # the same folder watched again (moved back in) keeps its descriptor

    def _forget_tree(self, top: str) -> None:
        """A folder moved away: its watches go (where it lands inside a root, it is watched anew)."""
        below = top + os.sep
        for wd, folder in list(self._folders.items()):
            if folder == top or folder.startswith(below):
                self._rm_watch(self._fd, wd)
                del self._folders[wd]

    # -- reading ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stopped:
            for path in self.wait(None):
                try:
                    self.on_path(path)
                except Exception:  # the callback's trouble must not end the watching
                    pass

    def wait(self, timeout: float | None) -> list[str]:
        """The changes announced within `timeout` seconds (None: until one is), read in the caller's thread.

        A worker that waits here itself, instead of `start()`, saves a thread and its wake-up per change: on a
        virtual machine each wake-up of a Python thread costs about 0.1 ms, more than reading the line itself."""
        try:
            ready, _, _ = select.select([self._fd, self._wake_r], [], [], timeout)
        except (OSError, ValueError):
            self.stopped = True  # closed under us
            return []
        if self._wake_r in ready:
            self.stopped = True
            return []
        if not ready:
            return []
        try:
            data = os.read(self._fd, READ_BYTES)
        except BlockingIOError:
            return []
        except OSError:
            self.stopped = True
            return []
        return self.changed_paths(data)

    def changed_paths(self, data: bytes) -> list[str]:
        """The paths one read of the descriptor announces, each once, in order; new folders get watched."""
        out: dict[str, None] = {}
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            name = data[offset + _HEADER.size: offset + _HEADER.size + length].split(b"\0", 1)[0]
            offset += _HEADER.size + length
            if mask & IN_Q_OVERFLOW:
                for root in self.roots:
                    self._watch_tree(root)  # folders created while events were lost
                    out[root] = None
                continue
            folder = self._folders.get(wd)
            if folder is None:
                continue
            if mask & IN_IGNORED:
                self._folders.pop(wd, None)  # the folder is gone (its parent reported it)
                continue
            text = os.fsdecode(name)
            path = os.path.join(folder, text) if text else folder
            if mask & IN_ISDIR and not text.startswith("."):
                if mask & IN_MOVED_FROM:
                    self._forget_tree(path)
                elif mask & (IN_CREATE | IN_MOVED_TO):
                    self._watch_tree(path)  # and what it already holds is read when the agent looks at it
            out[path] = None
        return list(out)
