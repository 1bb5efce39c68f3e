"""The run lock: one live vocabadapt process per run directory.

This keeps the kernel's flock rather than the `filelock` package: filelock's Unix lock is the same
flock, but it cannot say who holds the lock, and the message "in use by process 1234@host" is what
a user needs. The kernel drops a flock when its holder dies (even by SIGKILL), so a dead owner never
blocks a rerun and two processes can never both hold the lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Iterator

from ..errors import RunLockedError
from ..io import TMP_PREFIX

log = logging.getLogger(__name__)


@contextlib.contextmanager
def run_lock(lock: Path) -> Iterator[None]:
    """Hold an exclusive flock on the file `lock` for the duration; refuse when another process holds it.

    The file records the owner (pid@host) for the message; it is emptied, not deleted, on exit
    (deleting it would let a waiting process lock a detached inode). A lock naming another host is
    respected, since a flock may not cross hosts.
    Raises:
        RunLockedError: another live process (or another host) holds it.
    """
    import fcntl

    run_dir = lock.parent
    me = f"{os.getpid()}@{socket.gethostname()}"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunLockedError(f"{run_dir} is in use by process {owner}; wait for it to finish, or stop it") from None
    owner = os.pread(fd, 200, 0).decode(errors="replace").strip()
    host = owner.partition("@")[2]
    if host and host != socket.gethostname():
        os.close(fd)
        raise RunLockedError(
            f"{run_dir} is in use by process {owner} on another machine; if that run is gone, delete {lock}"
        )
    if owner:
        log.warning("taking over the lock %s left by %s, which no longer runs", lock, owner)
    os.ftruncate(fd, 0)
    os.pwrite(fd, me.encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock


def remove_temp_files(run_dir: Path) -> int:
    """Delete temp names (vocabadapt.io's `.tmp-*`) that killed writers left; call only under the lock."""
    leftovers = sorted(run_dir.rglob(TMP_PREFIX + "*"), key=lambda p: len(p.parts), reverse=True)
    for p in leftovers:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return len(leftovers)
