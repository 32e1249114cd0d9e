"""A cache build that meets a full disk or Ctrl-C (#27): one line that says what to do, and nothing left over.

- A full disk (``tests/helpers/disk_full.c`` loaded with LD_PRELOAD, as in ``tests/test_faults.py``): the
  build stops with ``CacheSpaceError`` naming the cache folder and the bytes the cache needs, and its partial
  build is removed, so that the space is back.
- Ctrl-C (SIGINT to the process group, as a terminal sends it): the workers print nothing, are ended at
  once (none is left running when the builder's ``KeyboardInterrupt`` arrives), and the builder says in one
  line what it kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_cache import write_photo

SHIM = ROOT / "tests" / "helpers" / "disk_full.c"
SIZE = 256

# Builds the cache of FOLDER under CACHE_ROOT with WORKERS processes; prints the error it ended with.
FULL_DISK_CHILD = """
import json, sys
from src.data.cache import build_cache
from src.data.layouts import find_labelled_images
folder, root, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    build_cache(find_labelled_images(folder, "folders"), root, workers=workers, chunk_size=2, progress=False)
    print(json.dumps({"error": None}))
except OSError as error:
    print(json.dumps({"error": str(error), "type": type(error).__name__, "errno": error.errno}))
"""

# Two workers; every decode after the first chunk hangs (so the workers are busy whatever the machine's
# load). When the first chunk is recorded, the process group gets SIGINT; reports what is left running.
CTRL_C_CHILD = """
import glob, json, multiprocessing, os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # pytest's parent may ignore SIGINT
from src.data import cache
folder, root = sys.argv[1], sys.argv[2]
decode = cache.load_square_rgb
first = sorted(glob.glob(folder + "/*/*.jpg"))[:2]

def hanging_decode(path, size):
    while str(path) not in first:
        time.sleep(0.05)
    return decode(path, size)

cache.load_square_rgb = hanging_decode

def interrupt():
    while not glob.glob(root + "/*.partial/chunks/*.npz"):
        time.sleep(0.05)
    os.killpg(os.getpgid(0), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
from src.data.layouts import find_labelled_images
try:
    cache.build_cache(find_labelled_images(folder, "folders"), root, workers=2, chunk_size=2, progress=False)
    print(json.dumps({"interrupted": False}))
except KeyboardInterrupt:
    alive = [p.pid for p in multiprocessing.active_children() if p.is_alive()]
    print(json.dumps({"interrupted": True, "workers_alive": alive}), flush=True)
    os._exit(130)  # do not wait for workers (the old code's would keep the process alive)
"""


def photos(folder: Path, count: int) -> Path:
    for i in range(count):
        write_photo(folder / "train" / "ab"[i % 2] / f"{i}.jpg", (300, 200), seed=i)
    return folder / "train"


@pytest.fixture(scope="module")
def disk_full_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler to build tests/helpers/disk_full.c")
    library = tmp_path_factory.mktemp("shim") / "disk_full.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM), "-ldl"], check=True)
    return library


def child_env(**extra: str) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""} | extra


@pytest.mark.parametrize("workers", [0, 2])
def test_a_full_disk_names_the_folder_and_the_bytes_needed_and_frees_the_partial_build(
    tmp_path: Path, disk_full_library: Path, workers: int
) -> None:
    folder = photos(tmp_path / "photos", 6)
    root = tmp_path / "cache"
    root.mkdir()
    env = child_env(
        LD_PRELOAD=str(disk_full_library),
        TEST_DISK_FULL_DIR=str(root),
        TEST_DISK_FULL_FREE=str(SIZE * SIZE * 3 + 1000),  # one square fits, the second does not
    )
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(folder), str(root), str(workers)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errno"] == 28 and report["type"] == "CacheSpaceError", report
    message = report["error"]
    assert "\n" not in message and not message.startswith("[Errno")
    need = 6 * SIZE * SIZE * 3
    assert f"no space left on the disk of {root} while caching {folder}" in message
    assert f"the cache needs {need:,} bytes" in message and f"6 x {SIZE}x{SIZE}x3" in message
    assert "the partial build was removed" in message and "data.cache_dir" in message
    assert not list(root.glob("*.partial"))  # its space is back
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_ctrl_c_ends_the_workers_at_once_and_they_print_nothing(tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", 12)
    root = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", CTRL_C_CHILD, str(folder), str(root)],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert result.returncode == 130, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"interrupted": True, "workers_alive": []}  # none left decoding
    assert "Traceback" not in result.stderr, result.stderr[-3000:]  # no worker printed its own
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"cache build of {folder} stopped by Ctrl-C; its finished chunks are kept in {root}"
    )
    assert list(root.glob("*.partial/chunks/*.npz"))  # kept: the next run resumes from them
