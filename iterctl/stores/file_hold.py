"""Holds for stores that live in files (SQLite, JSON): one ``flock`` per job id.

The kernel drops an ``flock`` the moment its process dies, SIGKILL included, so a crashed
runner never leaves a stale hold and no lease timeout is needed.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from iterctl.errors import JobHeldError

#: A read-only probe (see :meth:`FileHolds.held`) holds a shared lock for a few
#: microseconds; a runner that meets one tries again this often before it says "held".
_TAKE_ATTEMPTS = 20
_TAKE_PAUSE = 0.005


def holder_name() -> str:
    """This process as other processes should see it in "held by" messages."""
    return f"host {socket.gethostname()} pid {os.getpid()}"


class FileHolds:
    """Per-job-id lock files in a directory beside the store file."""

    def __init__(self, store_path: Path) -> None:
        self._dir = store_path.with_name(store_path.name + ".holds")
        self._open: dict[str, int] = {}

    def _path(self, job_id: str) -> Path:
        return self._dir / f"{job_id}.lock"

    def take(self, job_id: str) -> None:
        """Lock ``job_id`` for this process, or raise JobHeldError naming the holder."""
        self._dir.mkdir(mode=0o700, exist_ok=True)
        path = self._path(job_id)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if not _lock(fd, fcntl.LOCK_EX):
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                os.close(fd)
                raise JobHeldError(
                    f"job {job_id} is already running ({holder or 'another process'}) — "
                    "wait for it to stop, or stop it first; this process changed nothing"
                )
            if _same_file(fd, path):
                break
            os.close(fd)  # `delete` removed the file while we waited: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_name().encode(), 0)
        self._open[job_id] = fd

    def held(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` a live process holds now, this one included.

        A shared, non-blocking ``flock`` fails exactly when someone holds the exclusive
        one; when it succeeds it is dropped at once. Nothing is created or written.
        """
        live = set()
        for name in names:
            if name in self._open:
                live.add(name)
                continue
            try:
                fd = os.open(self._path(name), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue  # no lock file: nobody ever held it, or it was deleted
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    live.add(name)
            finally:
                os.close(fd)  # closing drops the shared lock, if we got it
        return live

    def remove(self, job_id: str) -> None:
        """Remove ``job_id``'s lock file, then unlock it (the caller holds it)."""
        self._path(job_id).unlink(missing_ok=True)
        self.drop(job_id)

    def drop(self, job_id: str) -> None:
        """Unlock ``job_id`` if this process holds it."""
        fd = self._open.pop(job_id, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def drop_all(self) -> None:
        """Unlock every job id this process holds."""
        for job_id in list(self._open):
            self.drop(job_id)


def _lock(fd: int, kind: int) -> bool:
    """Take ``kind`` on ``fd`` without blocking; a probe in the way is waited out."""
    for _attempt in range(_TAKE_ATTEMPTS):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(_TAKE_PAUSE)
        else:
            return True
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False
