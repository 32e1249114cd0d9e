"""Keep freed memory in the process: a training step allocates the same large tensors again and again."""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the system at once.

    By default glibc serves every allocation over 32 MiB with a fresh ``mmap`` and unmaps it on ``free``; the
    next tensor of that size then takes a page fault on each of its 4 KiB pages (the 37 MB conv1 activation at
    batch 32 is one such tensor). A training step allocates dozens of such tensors. With this the
    process keeps its peak memory mapped (``ru_maxrss`` grows accordingly). False where it is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # Blocks up to 1 GiB come from the heap; up to 2 GiB of free heap top is kept (mallopt takes a C int).
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
