"""A cache build in a child process, slowed down, for tests/test_cache.py (killed and concurrent builds).

Usage: python tests/cache_build_child.py FOLDER CACHE_ROOT DELAY_S CHUNK_SIZE [HANG_AFTER]
(folders layout, one worker: every decode sleeps DELAY_S first; with HANG_AFTER, the decode after that many
hangs until the process is killed, so a test kills it at a known point, whatever the machine's load).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from src.data import cache
from src.data.layouts import find_labelled_images

folder, cache_root, delay, chunk_size = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
hang_after = int(sys.argv[5]) if len(sys.argv) > 5 else None
decode = cache.load_square_rgb
decoded = 0


def slow_decode(path: str | Path, size: int) -> np.ndarray:
    global decoded
    while decoded == hang_after:
        time.sleep(1)
    time.sleep(delay)
    decoded += 1
    return decode(path, size)


cache.load_square_rgb = slow_decode
files = find_labelled_images(folder, "folders")
cache.build_cache(files, cache_root, workers=1, chunk_size=chunk_size, progress=False)
