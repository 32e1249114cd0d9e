"""``src/utils/locks.exclusive``: one process at a time, one waiting line, no ``.lock`` left behind, and a
killed holder releases."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.utils.locks import exclusive
from tests.conftest import ROOT

WAITING = "waiting for another process building the thing ..."

#: Holds the lock, notes its turn in a journal, says "held" and keeps it until its stdin says to go on.
HOLDER = """
import os, sys
from pathlib import Path
from src.utils.locks import exclusive
with exclusive(Path(sys.argv[1]), "the thing"):
    with open(sys.argv[2], "a") as journal:
        journal.write(f"in {os.getpid()}\\n")
    print("held", flush=True)
    sys.stdin.readline()
    with open(sys.argv[2], "a") as journal:
        journal.write(f"out {os.getpid()}\\n")
"""


def start_holder(lock: Path, journal: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(journal)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def read_line(process: subprocess.Popen) -> str:
    assert process.stdout is not None
    return process.stdout.readline()


def wait_for_lines(journal: Path, count: int, timeout_s: float = 300) -> list[str]:  # a hang, not slowness
    deadline = time.monotonic() + timeout_s
    while len(lines := journal.read_text().splitlines()) < count:
        assert time.monotonic() < deadline, lines
        time.sleep(0.01)
    return lines


def test_processes_take_turns_and_leave_no_lock_file(tmp_path: Path) -> None:
    """Three processes on one lock: one inside at a time, each waiter says so once, and the lock file of
    each holder (deleted as it lets go) never lets a waiter in beside the next holder."""
    lock, journal = tmp_path / "thing.lock", tmp_path / "journal.txt"
    first = start_holder(lock, journal)
    assert read_line(first) == "held\n"
    waiters = [start_holder(lock, journal) for _ in range(2)]
    for waiter in waiters:
        assert read_line(waiter) == f"{WAITING}\n"  # said while the first holds it
    assert first.communicate("\n", timeout=60)[0] == ""
    order = [first]
    for _ in waiters:  # the next one in holds it; the other still waits
        inside = [w for w in waiters if w not in order]
        journal_lines = wait_for_lines(journal, 2 * len(order) + 1)
        (entered,) = [w for w in inside if journal_lines[-1] == f"in {w.pid}"]
        assert read_line(entered) == "held\n"
        assert entered.communicate("\n", timeout=60)[0] == ""  # no second waiting line
        order.append(entered)
    assert journal.read_text().splitlines() == [f"{step} {p.pid}" for p in order for step in ("in", "out")]
    assert [p.returncode for p in order] == [0, 0, 0]
    assert not lock.exists()


def test_no_lock_file_is_left_after_a_finished_or_failed_build(tmp_path: Path, capsys) -> None:
    lock = tmp_path / "thing.lock"
    with exclusive(lock, "the thing"):
        assert lock.is_file()
    assert not lock.exists()
    with pytest.raises(RuntimeError, match="build failed"), exclusive(lock, "the thing"):
        raise RuntimeError("build failed")
    assert not lock.exists()
    assert WAITING not in capsys.readouterr().out  # nobody else held it: no waiting line


def test_a_killed_holder_releases_the_lock(tmp_path: Path, capsys) -> None:
    lock, journal = tmp_path / "thing.lock", tmp_path / "journal.txt"
    holder = start_holder(lock, journal)
    assert read_line(holder) == "held\n"
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=60)
    assert lock.is_file()  # it had no chance to delete it
    with exclusive(lock, "the thing"):
        pass
    assert not lock.exists()
    assert WAITING not in capsys.readouterr().out
