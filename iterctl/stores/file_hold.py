"""Holds for stores that live in files (SQLite, JSON): one ``flock`` per job id.

The kernel drops an ``flock`` the moment its process dies, SIGKILL included, so a crashed
runner never leaves a stale hold and no lease timeout is needed.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from iterctl.errors import JobHeldError


def holder_name() -> str:
    """This process as other processes should see it in "held by" messages."""
    return f"host {socket.gethostname()} pid {os.getpid()}"


class FileHolds:
    """Per-job-id lock files in a directory beside the store file."""

    def __init__(self, store_path: Path) -> None:
        self._dir = store_path.with_name(store_path.name + ".holds")
        self._open: dict[str, int] = {}

    def take(self, job_id: str) -> None:
        """Lock ``job_id`` for this process, or raise JobHeldError naming the holder."""
        self._dir.mkdir(mode=0o700, exist_ok=True)
        path = self._dir / f"{job_id}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JobHeldError(
                f"job {job_id} is already running ({holder}) — wait for it to stop, "
                "or stop it first; this process changed nothing"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_name().encode(), 0)
        self._open[job_id] = fd

    def drop(self, job_id: str) -> None:
        """Unlock ``job_id`` if this process holds it."""
        fd = self._open.pop(job_id, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def drop_all(self) -> None:
        """Unlock every job id this process holds."""
        for job_id in list(self._open):
            self.drop(job_id)
