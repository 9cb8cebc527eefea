"""The index's write lock: one writer at a time across threads, handles and processes.

An exclusive ``flock`` on the index folder itself, taken for one operation (add, delete,
compact) and released when it ends; the kernel releases it when a holder dies, so a crash
never leaves the index locked, and no file can be deleted out from under it (an
``rm *.lock`` never lets two writers in at once). The holder writes who it is (pid, host,
operation, since) into ``write.lock``, which is what ``IndexLockedError`` reports to a
writer that waited too long.
Where ``fcntl`` is missing (Windows) SQLite's own write lock still serializes commits.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from colcade.errors import IndexLockedError, InvalidInputError

fcntl: Any
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["DEFAULT_TIMEOUT", "LOCK_FILE", "WriteLock", "fcntl", "same_file"]

LOCK_FILE = "write.lock"
DEFAULT_TIMEOUT = 60.0


def same_file(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path`` (not deleted or replaced)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class WriteLock:
    """Serializes writers: a thread lock inside the process, ``flock`` between processes."""

    def __init__(self, folder: Path | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
            raise InvalidInputError(
                f"lock_timeout must be a number of seconds >= 0 (inf waits forever), but got {timeout!r}"
            )
        self.folder = folder
        self.path = folder / LOCK_FILE if folder is not None else Path(os.devnull)
        self.timeout = float(timeout)
        self._thread_lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def hold(self, operation: str) -> Iterator[None]:
        """Hold the lock for ``operation``; ``IndexLockedError`` after ``timeout`` seconds."""
        if not self._thread_lock.acquire(timeout=-1 if math.isinf(self.timeout) else self.timeout):
            raise IndexLockedError(
                f"another thread of this process has been writing to the index for over "
                f"{self.timeout:.0f} s; retry later or pass a longer lock_timeout"
            )
        fd = None
        try:
            if self._depth == 0 and self.folder is not None and fcntl is not None:
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
        # The lock is on the index folder itself, which nobody deletes while using the index;
        # write.lock only says who holds it (deleting it loses that, never the exclusion).
        fd = os.open(self.path.parent, os.O_RDONLY)
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexLockedError(
                        f"{self.path.parent} is being written by {self.holder()} and stayed locked for "
                        f"{self.timeout:.0f} s; wait for that operation to end, or pass a longer lock_timeout"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "operation": operation, "since": time.time()}
        try:
            tmp = self.path.with_name(f".{LOCK_FILE}.{os.getpid()}")
            tmp.write_text(json.dumps(owner))
            os.replace(tmp, self.path)
        except OSError:
            pass  # who holds the lock is information only
        return fd

    def holder(self) -> str:
        """Who holds (or last held) the lock, in words."""
        try:
            owner = json.loads(self.path.read_text() or "{}")
            since = time.strftime("%H:%M:%S", time.localtime(owner["since"]))
            return f"process {owner['pid']} on {owner['host']} ({owner['operation']}, since {since})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"
