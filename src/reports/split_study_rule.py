"""The split study's decision rule (docs/split-study.md, "The decision rule", committed in 550cb8a) as code.

Each function applies one paragraph of the rule to the runs' final numbers
(:mod:`src.reports.split_study_runs`) and returns a :class:`Finding`: the verdict in the rule's own words
and the numbers that decided it. The thresholds are the rule's: the two below, and the fresh nets' 99th
percentiles of ``docs/split-study/fresh_bands.csv`` (:func:`read_p99`), which the rule quotes to three
digits. An arm with fewer runs than the rule names gets the verdict ``pending`` (nothing is decided on part
of an arm).
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from src.reports.split_study_arms import ARMS
from src.reports.split_study_runs import StudyRun

#: "A run learned": its conv1 learning measure at least twice the random kernels' 0.20, and its ten-view test
#: accuracy at least ten times chance (1/200).
LEARNED_MEASURE = 0.40
LEARNED_TEST_ACC = 0.05
#: Runs per arm that the rule names (seeds 1, 2, 3 for A and C; 1, 2 for B and E), and each arm's towers.
PLANNED = {name: len(arm.seeds) for name, arm in ARMS.items()}
TOWERS = {name: arm.towers for name, arm in ARMS.items()}
SPLITS_NEEDED = 2  # condition 1: at least 2 of the 3 A runs split
SEPARATIONS_NEEDED = 2  # Distill's test: at least 2 of 3 C runs


@dataclass(frozen=True)
class Finding:
    """One paragraph of the rule applied: ``verdict`` in the rule's words, ``reasons`` with the numbers."""

    question: str
    verdict: str
    reasons: tuple[str, ...]


def read_p99(path: Path) -> dict[tuple[int, str], float]:
    """``{(towers, measure): 99th percentile}`` of the fresh-net bands CSV."""
    with path.open(newline="") as file:
        return {(int(row["towers"]), row["measure"]): float(row["p99"]) for row in csv.DictReader(file)}


def learned(run: StudyRun) -> bool:
    return (
        run.final.learning >= LEARNED_MEASURE
        and run.test_acc is not None
        and run.test_acc >= LEARNED_TEST_ACC
    )


def splits(run: StudyRun, p99: dict[tuple[int, str], float]) -> bool:
    return run.final.split > p99[(run.towers, "split")]


def _arm(runs: Sequence[StudyRun], arm: str) -> list[StudyRun]:
    return [r for r in runs if r.arm == arm]


def _missing(runs: Sequence[StudyRun], arms: str) -> list[str]:
    """What keeps the arms from being complete: too few runs, or runs not yet tested."""
    missing = []
    for arm in arms:
        done = [r for r in _arm(runs, arm) if r.test_acc is not None]
        if len(done) < PLANNED[arm]:
            missing.append(f"arm {arm} has {len(done)} of its {PLANNED[arm]} runs finished")
    return missing


def _pending(question: str, runs: Sequence[StudyRun], arms: str) -> Finding | None:
    """The ``pending`` finding while any of ``arms`` is incomplete, else None."""
    missing = _missing(runs, arms)
    return Finding(question, "pending", tuple(missing)) if missing else None


def _values(runs: Sequence[StudyRun], what: str) -> str:
    return ", ".join(f"{r.name} {getattr(r.final, what):.3f}" for r in runs)


def emergence(runs: Sequence[StudyRun], p99: dict[tuple[int, str], float]) -> Finding:
    """The rule's "Verdict on 200 classes (A against C)"."""
    question = "Does the split emerge with 200 classes (A against C)?"
    if (waiting := _pending(question, runs, "AC")) is not None:
        return waiting
    a, c = _arm(runs, "A"), _arm(runs, "C")
    band = p99[(2, "split")]
    not_learned = [r.name for r in a + c if not learned(r)]
    a_split = statistics.median(r.final.split for r in a)
    a_change = statistics.median(r.final.change_split for r in a)
    c_split = max(r.final.split for r in c)
    c_change = max(r.final.change_split for r in c)
    split_count = sum(splits(r, p99) for r in a)
    one = split_count >= SPLITS_NEEDED
    two = a_split > c_split
    three = a_change > band and a_change > c_change
    reasons = (
        "every A and C run learned"
        if not not_learned
        else f"did not learn (learning measure < {LEARNED_MEASURE} or test accuracy < {LEARNED_TEST_ACC}): "
        + ", ".join(not_learned),
        f"1. A runs above the fresh p99 {band:g}: {split_count} of {len(a)} ({_values(a, 'split')}): "
        + ("holds" if one else "fails"),
        f"2. median A split {a_split:.3f} against the highest C split {c_split:.3f}: "
        + ("holds" if two else "fails"),
        f"3. median A change split {a_change:.3f} against the fresh p99 {band:g} and the highest C change "
        f"split {c_change:.3f}: " + ("holds" if three else "fails"),
    )
    if not_learned:
        verdict = "inconclusive"
    elif one and two and three:
        verdict = "the split emerges"
    elif not (one and two):
        verdict = "it does not emerge"
    else:
        verdict = "inconclusive"
    return Finding(question, verdict, reasons)


def class_count(runs: Sequence[StudyRun], emerged: Finding) -> Finding:
    """The rule's "Class count (B)", read only if the split emerges in A."""
    question = "Does the class count matter (B against A)?"
    if emerged.verdict != "the split emerges":
        return Finding(
            question, "not read", (f"the rule reads B only if the split emerges in A ({emerged.verdict})",)
        )
    if (waiting := _pending(question, runs, "B")) is not None:
        return waiting
    a, b = _arm(runs, "A"), _arm(runs, "B")
    low, high = min(r.final.split for r in a), max(r.final.split for r in a)
    b_splits = [r.final.split for r in b]
    if all(s < low for s in b_splits):
        verdict = "fewer classes weaken it"
    elif all(low <= s <= high for s in b_splits):
        verdict = "no effect seen"
    else:
        verdict = "unclear with two seeds"
    return Finding(
        question, verdict, (f"B splits {_values(b, 'split')} against A's range {low:.3f}-{high:.3f}",)
    )


def four_towers(runs: Sequence[StudyRun], p99: dict[tuple[int, str], float]) -> Finding:
    """The rule's "Four towers (E)": by colour, and by frequency."""
    question = "Do four towers split by colour, and by frequency (E)?"
    if (waiting := _pending(question, runs, "E")) is not None:
        return waiting
    e = _arm(runs, "E")
    colour_band, frequency_band = p99[(4, "split")], p99[(4, "frequency_split")]
    by_colour = all(r.final.split > colour_band for r in e)
    by_frequency = all(r.final.frequency_split > frequency_band for r in e)
    verdict = ("splits by colour" if by_colour else "no colour split") + (
        " and by frequency" if by_frequency else ", not by frequency"
    )
    return Finding(
        question,
        verdict,
        (
            f"colour splits {_values(e, 'split')} against the four-tower fresh p99 {colour_band:g}",
            f"frequency splits {_values(e, 'frequency_split')} against its fresh p99 {frequency_band:g}",
        ),
    )


def distill_test(runs: Sequence[StudyRun], p99: dict[tuple[int, str], float]) -> Finding:
    """The rule's "Distill's test on the control (C)"."""
    question = "Does the unbranched control hold the colour structure (Distill's test on C)?"
    if (waiting := _pending(question, runs, "C")) is not None:
        return waiting
    c = _arm(runs, "C")
    band = p99[(1, "singular_vector_separation")]
    values = [r.singular_vector_separation for r in c]
    above = sum(v is not None and v > band for v in values)
    verdict = "holds the colour structure" if above >= SEPARATIONS_NEEDED else "does not hold it"
    shown = ", ".join(
        f"{r.name} {'n/a' if v is None else f'{v:.3f}'}" for r, v in zip(c, values, strict=True)
    )
    return Finding(
        question, verdict, (f"{above} of {len(c)} above the one-tower fresh p99 {band:g} ({shown})",)
    )


def findings(runs: Sequence[StudyRun], p99: dict[tuple[int, str], float]) -> list[Finding]:
    """Every paragraph of the rule, in its order."""
    emerged = emergence(runs, p99)
    return [emerged, class_count(runs, emerged), four_towers(runs, p99), distill_test(runs, p99)]
