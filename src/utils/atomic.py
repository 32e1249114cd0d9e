"""Write a file so that a reader (or a resumed run) sees all of it or none of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: Where Linux (4.7 and later) shows a process's umask without changing it.
PROC_STATUS = Path("/proc/self/status")


def current_umask() -> int:
    """The process's umask (``0o022`` for most users), read without changing it where the system allows.

    ``os.umask`` can only read the mask by setting another one; between the two calls a file created by
    another thread would get that other mask. So the mask is read from ``/proc/self/status`` where there
    is one, and elsewhere set to the private ``0o077`` for that moment (a file created then is private, never
    more open than the user asked).
    """
    try:
        with PROC_STATUS.open() as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextmanager
def replacing(path: str | os.PathLike[str], fsync: bool = False) -> Iterator[BinaryIO]:
    """A handle on a temporary file beside ``path``, renamed over ``path`` when the block ends.

    The rename is atomic on one filesystem, which is why the temporary file lives in the same folder. A
    failure (a full disk, an exception in the block) leaves ``path`` as it was and removes the temporary
    file. ``fsync``: have the bytes on disk before the rename (a crash then cannot leave an empty file).
    The file gets the mode ``open(path, "w")`` would give a new file (``0o666`` less the umask: ``0644``
    for most users), not the private ``0600`` of the temporary file it was written as.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            mode = 0o666 & ~current_umask()
            os.chmod(handle.fileno() if os.chmod in os.supports_fd else tmp, mode)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path`` (``replacing``)."""
    with replacing(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    return Path(path)
