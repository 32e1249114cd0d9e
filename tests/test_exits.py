"""The exit codes' one table (``src/utils/exits.py``): the numbers a shell, a cluster and a sweep see, the
table in the docstring that says them, and the raisers that take them from there."""

from __future__ import annotations

import re
import signal

import pytest

import src.utils.exits as exits
from src.callbacks import preemption, training_health
from src.runs.paths import REPO_ROOT
from src.utils.exits import ErrorExit, exit_on_error, sweep_exit_code

#: name -> the code it has always had (a shell reports 128 + n for a process signal n ended)
CODES = {
    "ERROR_EXIT_CODE": 1,
    "DIED_EXIT_CODE": 3,
    "FAILED_JOBS_EXIT_BASE": 100,
    "INTERRUPTED_EXIT_CODE": 128 + signal.SIGINT,
    "PREEMPTED_EXIT_CODE": 128 + signal.SIGTERM,
}


def test_the_codes_keep_their_numbers() -> None:
    assert {name: getattr(exits, name) for name in CODES} == CODES
    assert (exits.INTERRUPTED_EXIT_CODE, exits.PREEMPTED_EXIT_CODE) == (130, 143)
    assert [sweep_exit_code(n) for n in (1, 2, 27, 28, 500)] == [101, 102, 127, 127, 127]


def test_the_docstring_table_names_every_code_with_its_number() -> None:
    named = {name for name in vars(exits) if name.endswith(("_EXIT_CODE", "_EXIT_BASE"))}
    assert named == set(CODES)
    rows = re.findall(r"^(\d+(?: \+ n)?)\s+``(\w+)``", exits.__doc__ or "", re.MULTILINE)
    assert {name: int(code.split()[0]) for code, name in rows} == CODES


def test_the_raisers_use_the_tables_codes() -> None:
    assert preemption.PREEMPTED_EXIT_CODE is exits.PREEMPTED_EXIT_CODE
    assert preemption.exit_code_of(signal.SIGINT) == exits.INTERRUPTED_EXIT_CODE
    assert preemption.exit_code_of(signal.SIGTERM) == exits.PREEMPTED_EXIT_CODE
    assert training_health.DIED_EXIT_CODE is exits.DIED_EXIT_CODE


@pytest.mark.parametrize("folder", ["src", "bench"])
def test_no_exit_code_is_written_as_a_bare_number(folder: str) -> None:
    """``SystemExit(<digits>)``, ``exit_on_error(<error>, <digits>, ...)`` or ``<NAME>_EXIT_CODE = <digits>``
    outside src/utils/exits.py: a code outside the table."""
    bare = re.compile(r"SystemExit\(\d|exit_on_error\(\w+, \d|^\w*EXIT\w* = \d")
    found = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line) and path != REPO_ROOT / "src" / "utils" / "exits.py"
    ]
    assert found == []


class Rank:
    """What `exit_on_error` reads of a trainer: whether this process is rank 0."""

    def __init__(self, is_global_zero: bool) -> None:
        self.is_global_zero = is_global_zero


@pytest.mark.parametrize("rank_zero", [True, False])
def test_exit_on_error_closes_with_the_code_and_says_why_once(
    rank_zero: bool, capsys: pytest.CaptureFixture
) -> None:
    closed: list[int] = []
    with (
        pytest.raises(ErrorExit) as stopped,
        exit_on_error(OSError, exits.ERROR_EXIT_CODE, Rank(rank_zero), closed.append),
    ):
        raise OSError("no space left on /data")
    assert stopped.value.code == exits.ERROR_EXIT_CODE and closed == [exits.ERROR_EXIT_CODE]
    assert stopped.value.reason == "no space left on /data"
    assert capsys.readouterr().err == ("error: no space left on /data\n" if rank_zero else "")


def test_other_errors_pass_through_untouched() -> None:
    closed: list[int] = []
    with pytest.raises(KeyError), exit_on_error(OSError, exits.ERROR_EXIT_CODE, Rank(True), closed.append):
        raise KeyError("x")
    assert closed == []
