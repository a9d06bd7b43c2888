"""Locks for stores that live in files (SQLite, JSON): one ``flock`` per job id.

The kernel drops an ``flock`` the moment its process dies, SIGKILL included, so a crashed
runner never leaves a stale hold and no lease timeout is needed.

Lock files are removed when they are let go, so a store's folder keeps only the store.
That is safe because a lock counts only while its file is still the one at the path:
whoever locks a file that was removed meanwhile lets it go and tries again. Lock files
are opened without following symbolic links, in a folder only their owner may write.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from iterctl.errors import JobHeldError, StoreUnusableError, store_os_error
from iterctl.stopping import wait_until

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC

#: A read-only probe (see :meth:`FileHolds.held`) holds a shared lock for a few
#: microseconds; a runner that meets one tries again this often before it says "held".
_TAKE_ATTEMPTS = 20
_TAKE_PAUSE = 0.005


def holder_name() -> str:
    """This process as other processes should see it in "held by" messages."""
    return f"host {socket.gethostname()} pid {os.getpid()}"


class FileLock:
    """One lock file: taken at once (:meth:`try_take`) or within the store wait (:meth:`take`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        #: Who held the lock at the last failed attempt, as its file says.
        self.last_holder = "another process"

    def try_take(self) -> bool:
        """Lock the file for this process; False if another process has it."""
        for _attempt in range(100):  # each retry means another process removed the file
            fd = _open_lock_file(self.path)
            if not _lock(fd, fcntl.LOCK_EX):
                text = os.pread(fd, 200, 0).decode(errors="replace").strip()
                self.last_holder = text or "another process"
                os.close(fd)
                return False
            if _still_at(fd, self.path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, holder_name().encode(), 0)
                self._fd = fd
                return True
            os.close(fd)  # its holder removed it as we opened it: lock the new one
        raise StoreUnusableError(f"cannot lock {self.path}: it keeps being replaced")

    def take(self, what: str) -> None:
        """Lock the file, waiting for another holder as long as the store wait allows."""
        wait_until(self.try_take, what=what, holder=lambda: self.last_holder)

    def drop(self) -> None:
        """Unlock, and remove the file while still holding it (see the module docstring)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with suppress(OSError):  # already gone, or a read-only folder: still let go
            os.unlink(self.path)
        os.close(fd)  # closing the descriptor releases the flock


class FileHolds:
    """Per-job-id lock files in a folder beside the store file: ``<store>.holds/``."""

    def __init__(self, store_path: Path) -> None:
        self._dir = store_path.with_name(store_path.name + ".holds")
        self._open: dict[str, FileLock] = {}

    def _path(self, job_id: str) -> Path:
        return self._dir / f"{job_id}.lock"

    def take(self, job_id: str) -> None:
        """Lock ``job_id`` for this process, or raise JobHeldError naming the holder."""
        lock = FileLock(self._path(job_id))
        for _attempt in range(100):
            safe_folder(self._dir)
            try:
                taken = lock.try_take()
            except FileNotFoundError:
                continue  # the folder was removed by a process letting its last hold go
            except OSError as error:
                raise store_os_error(error, f"lock job {job_id} in {self._dir}") from None
            if not taken:
                raise JobHeldError(
                    f"job {job_id} is already running ({lock.last_holder}) — wait for it "
                    "to stop, or stop it first; this process changed nothing"
                )
            self._open[job_id] = lock
            return
        raise StoreUnusableError(f"cannot lock job {job_id} in {self._dir}: it keeps vanishing")

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
        """Let ``job_id`` go for good (``delete``; the caller holds it): its lock file is
        removed as every hold's is when let go."""
        self.drop(job_id)

    def drop(self, job_id: str) -> None:
        """Unlock ``job_id`` if this process holds it; remove the folder once empty."""
        lock = self._open.pop(job_id, None)
        if lock is not None:
            lock.drop()
            with suppress(OSError):  # other holds live in it (or it is gone already)
                self._dir.rmdir()

    def drop_all(self) -> None:
        """Unlock every job id this process holds."""
        for job_id in list(self._open):
            self.drop(job_id)


def safe_folder(folder: Path) -> None:
    """Create ``folder`` (0700), or refuse one that another user could plant files in."""
    try:
        folder.mkdir(mode=0o700)
        return
    except FileExistsError:
        pass
    except OSError as error:
        raise store_os_error(error, f"make the folder {folder}") from None
    info = os.lstat(folder)
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "it is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "it is not a folder"
    elif info.st_uid != os.getuid():
        problem = f"it belongs to user id {info.st_uid}, not to this user ({os.getuid()})"
    elif info.st_mode & 0o022:
        problem = f"others may write in it (mode {info.st_mode & 0o777:04o})"
    if problem:
        raise StoreUnusableError(
            f"refused to use {folder}: {problem} — remove it, and iterctl makes it anew "
            "(private to this user)"
        )


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StoreUnusableError(
                f"refused to open {path}: it is a symbolic link — remove it; iterctl "
                "never writes through links"
            ) from None
        raise


def _still_at(fd: int, path: Path) -> bool:
    """True when ``fd`` is still the file at ``path`` (not removed or replaced since)."""
    try:
        at_path = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (at_path.st_dev, at_path.st_ino) == (mine.st_dev, mine.st_ino)


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
