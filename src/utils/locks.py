"""One process at a time: an exclusive file lock (``filelock``), for builds that must not run twice.

``filelock.FileLock`` takes an ``flock`` on the lock file (so a killed holder releases it) and, while another
process holds it, polls until it can have it. What it does not do is delete the file: it keeps a native
lock's file on release so that waiters share one inode. A finished (or failed) build here must leave no
``.lock`` behind, so ``deleted_on_release`` deletes it while still holding the lock, then lets go. That is
safe with filelock: a waiter that then locks the deleted file sees it has no name any more (``st_nlink``
is 0), lets it go and locks the path again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import BaseFileLock, FileLock, Timeout

from src.utils.console import say


@contextmanager
def exclusive(lock_path: Path, building: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path``; while another process holds it, say so once and wait.

    ``building`` names what the lock guards, for the waiting message. (flock over NFS depends on the server.)
    """
    lock = FileLock(lock_path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        say(f"waiting for another process building {building} ...")
        lock.acquire()
    with deleted_on_release(lock):
        yield


@contextmanager
def deleted_on_release(lock: BaseFileLock) -> Iterator[None]:
    """Run the body holding the acquired ``lock``; then delete its file while still holding it, and let go."""
    try:
        yield
    finally:
        Path(lock.lock_file).unlink(missing_ok=True)  # while held, so that no waiter takes a stale lock
        lock.release()
