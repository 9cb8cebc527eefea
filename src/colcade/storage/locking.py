"""The index's write lock: one writer at a time across threads, handles and processes.

An exclusive ``flock`` on ``<index>/write.lock``, taken for one operation (add, delete,
compact) and released when it ends; the kernel releases it when a holder dies, so a crash
never leaves the index locked. The holder writes who it is (pid, host, operation, since)
into the file, which is what ``IndexLockedError`` reports to a writer that waited too long.
Where ``fcntl`` is missing (Windows) SQLite's own write lock still serializes commits.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from colcade.errors import IndexLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = "write.lock"
DEFAULT_TIMEOUT = 60.0


class WriteLock:
    """Serializes writers: a thread lock inside the process, ``flock`` between processes."""

    def __init__(self, folder: Path | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = folder / LOCK_FILE if folder is not None else None
        self.timeout = timeout
        self._thread_lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def hold(self, operation: str) -> Iterator[None]:
        """Hold the lock for ``operation``; ``IndexLockedError`` after ``timeout`` seconds."""
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise IndexLockedError(f"another thread of this process has been writing to the index for over "
                                   f"{self.timeout:.0f} s; retry later or pass a longer lock_timeout")
        fd = None
        try:
            if self._depth == 0 and self.path is not None and fcntl is not None:
                fd = self._acquire(operation)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
        finally:
            if fd is not None:
                os.close(fd)  # releases the flock
            self._thread_lock.release()

    def _acquire(self, operation: str) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    raise IndexLockedError(
                        f"{self.path.parent} is being written by {holder} and stayed locked for {self.timeout:.0f} s; "
                        "wait for that operation to end, or pass a longer lock_timeout"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "operation": operation, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        return fd

    def holder(self) -> str:
        """Who holds (or last held) the lock, in words."""
        try:
            owner = json.loads(self.path.read_text() or "{}")
            since = time.strftime("%H:%M:%S", time.localtime(owner["since"]))
            return f"process {owner['pid']} on {owner['host']} ({owner['operation']}, since {since})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"
