"""The Figure 3 report's text: the tables per arm, the halfway check and the statement generated from the
numbers, as ``figure3.md``."""

from __future__ import annotations

from collections.abc import Sequence

from src.metric_names import TEST_ACC, VAL_ACC
from src.reports.figure3_numbers import fmt, mean_and_sd, minutes, tower_groups
from src.reports.figure3_references import INIT, Band, Reference
from src.reports.figure3_runs import AUC, LOW_FREQ, SPLIT, SPLIT_P, Run, by_arm, tower_keys

#: A per-run p-value below this is called significant in the statement (two towers only).
ALPHA = 0.05


def _arm_title(towers: int) -> str:
    if towers == 1:
        return "towers = 1 (the control: the two halves of one tower's kernels are compared)"
    return f"towers = {towers}"


def _arm_table(runs: Sequence[Run], groups: int) -> list[str]:
    """One row per run, then the mean and sd over them."""
    name = "half" if runs[0].towers == 1 else "tower"
    colour = [f"colour frac. {name} {t}" for t in range(groups)]
    header = ["seed", "run", "epochs", "fit (min)", "split", "AUC", "p", *colour]
    header += ["learning measure", "halfway", "val acc", "test acc"]
    fraction_keys = [tower_keys(t)[1] for t in range(groups)]
    keys = [SPLIT, AUC, SPLIT_P, *fraction_keys, LOW_FREQ]

    def numbers(run: Run) -> list[float | None]:
        final = run.final
        return [
            float(run.last_epoch),
            minutes(run.fit_s),
            *(final.get(k) for k in keys),
            None,
            final.get(VAL_ACC),
            final.get(TEST_ACC),
        ]

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        cells = [fmt(v) for v in numbers(run)]
        cells[0] = str(run.last_epoch)
        cells[-3] = fmt(run.halfway)
        lines.append(f"| {run.seed} | {run.label} | " + " | ".join(cells) + " |")
    columns = list(zip(*(numbers(run) for run in runs), strict=True))
    stats = [mean_and_sd(column) for column in columns]
    for label, index in (("mean", 0), ("sd", 1)):
        cells = [fmt(s[index]) for s in stats]
        cells[0] = fmt(stats[0][index], digits=1)  # epochs
        cells[-3] = f"{sum(bool(r.halfway) for r in runs)} of {len(runs)}" if index == 0 else ""
        lines.append(f"| **{label}** | | " + " | ".join(cells) + " |")
    return lines


def _range(values: Sequence[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f}"


def _compare(name: str, runs: Sequence[Run], control: Sequence[Run], band: Band) -> str:
    """One arm's final splits against the control's range and the arm's random band, in words."""
    splits = [r.final[SPLIT] for r in runs if SPLIT in r.final]
    control_splits = [r.final[SPLIT] for r in control if SPLIT in r.final]
    if not splits:
        return f"The {name} runs logged no split yet."
    mean, sd = mean_and_sd(splits)
    spread = "" if sd is None else f" +- {sd:.3f}"
    text = f"The {name} runs' final split is {mean:.3f}{spread} "
    text += f"(range {_range(splits)}, {count_runs(splits)})"
    if control_splits and control is not runs:
        low, high = min(control_splits), max(control_splits)
        if min(splits) > high:
            where = "every one lies above"
        elif max(splits) < low:
            where = "every one lies below"
        else:
            where = "they overlap"
        text += f"; {where} the one-tower control's range ({_range(control_splits)})"
    text += f"; {_relation(splits, band.high)} the band of fresh {band.towers}-tower nets "
    text += f"({band.mean:.3f} +- 2 x {band.sd:.3f}, up to {band.high:.3f})."
    p_values = [r.final[SPLIT_P] for r in runs if SPLIT_P in r.final]
    if p_values:
        significant = sum(p < ALPHA for p in p_values)
        text += f" {significant} of {len(p_values)} have p < {ALPHA:g} for their own split."
    return text


def count_runs(values: Sequence[object]) -> str:
    return f"{len(values)} run" + ("" if len(values) == 1 else "s")


def _relation(splits: Sequence[float], high: float) -> str:
    if min(splits) > high:
        return "every one lies above"
    if max(splits) <= high:
        return "every one lies within or below"
    return f"{sum(s > high for s in splits)} of {len(splits)} lie above"


def statement(runs: Sequence[Run], bands: dict[int, Band], reference: Reference) -> str:
    """A paragraph that says what the numbers show, and no more."""
    arms = by_arm(runs)
    parts = []
    halfway = [r for r in runs if r.halfway]
    parts.append(
        f"{len(halfway)} of {len(runs)} runs end at least halfway from random kernels to "
        f"{reference.name}'s on the learning measure ({reference.halfway:.3f})."
    )
    if len(halfway) < len(runs):
        parts.append(
            "A run short of halfway has conv1 kernels still closer to random than to a trained net's, so "
            "its split says little about figure 3."
        )
    control = arms.get(1, [])
    for towers, arm in sorted(arms.items()):
        name = "one-tower control" if towers == 1 else f"{towers}-tower"
        parts.append(_compare(name, arm, control, bands[towers]))
    if 2 not in arms or 1 not in arms:
        missing = " and ".join(f"towers={t}" for t in (1, 2) if t not in arms)
        parts.append(
            f"There are no {missing} runs, so the comparison the experiment is built for is not made."
        )
    parts.append(f"{reference.name}'s split is {reference.split:.3f}.")
    if any(len(arm) < 5 for arm in arms.values()):
        parts.append("With this few seeds per arm these are comparisons of ranges, not significance tests.")
    return " ".join(parts)


def _summary_table(runs: Sequence[Run], bands: dict[int, Band]) -> list[str]:
    header = ["towers", "runs", "final split", "random band (mean +- 2 sd)", "learning measure", "test acc"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for towers, arm in sorted(by_arm(runs).items()):
        cells = [str(towers), str(len(arm))]
        for key in (SPLIT, None, LOW_FREQ, TEST_ACC):
            if key is None:
                band = bands[towers]
                cells.append(f"{band.mean:.3f} ({max(band.low, 0.0):.3f}..{band.high:.3f})")
                continue
            mean, sd = mean_and_sd([r.final.get(key) for r in arm])
            cells.append(fmt(mean) if sd is None else f"{fmt(mean)} +- {fmt(sd)}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _untagged(runs: Sequence[Run]) -> list[str]:
    """A warning naming the runs that ``experiment=figure3`` did not make (no ``figure3`` tag)."""
    others = [r.label for r in runs if "figure3" not in r.tags]
    if not others:
        return []
    return [f"**Not made by `experiment=figure3`** (no `figure3` tag): {', '.join(others)}.", ""]


def markdown(
    runs: Sequence[Run], bands: dict[int, Band], reference: Reference, header: str, pictures: dict[int, Run]
) -> str:
    groups = tower_groups(runs)
    seeds = ", ".join(f"towers={t}: seeds {[r.seed for r in arm]}" for t, arm in sorted(by_arm(runs).items()))
    lines = [
        f"<!-- {header} -->",
        "# Figure 3 on real photographs: the runs",
        "",
        f"{count_runs(runs)} ({seeds}) of `experiment=figure3`; the recipe and the data are in the README, "
        '"The experiment (Figure 3 on real photographs)". The numbers are in `figure3/runs.csv` (final, per '
        "run) and `figure3/epochs.csv` (per epoch).",
        "",
        *_untagged(runs),
        "## Summary",
        "",
        statement(runs, bands, reference),
        "",
        *_summary_table(runs, bands),
        "",
        f"Split: 2 AUC - 1 between the most and the least colourful tower's conv1 scores, 0 alike .. 1 "
        f"separated (`src/analysis/colour.py`). Random band: the split of {bands[runs[0].towers].seeds} "
        f"freshly initialised nets per arm (`model.init={INIT}`). Learning measure: `kernels/low_freq` "
        f"(`src/analysis/smoothness.py`), {reference.random_low_freq:.3f} for random kernels, "
        f"{reference.low_freq:.3f} for {reference.name}. Values are mean +- sd over seeds.",
        "",
        "## Per arm",
    ]
    for towers, arm in sorted(by_arm(runs).items()):
        groups_here = 2 if towers == 1 else towers
        lines += ["", f"### {_arm_title(towers)}", "", *_arm_table(arm, min(groups, groups_here))]
    lines += [
        "",
        "Epochs: epochs trained at the last scores. Fit: wall time from the kernels' picture at "
        "initialisation to the last epoch's (training and per-epoch validation; no cache build, no test; "
        "from file times; a resumed run's pause is left out). p: two-sided p of the run's own split "
        "(two groups only). sd: sample standard deviation over seeds.",
        "",
        "## The halfway check",
        "",
        f"A run passes when its final learning measure is at least {reference.halfway:.3f}, halfway from "
        f"random kernels ({reference.random_low_freq:.3f}) to {reference.name}'s ({reference.low_freq:.3f}).",
        "",
    ]
    failed = [r for r in runs if not r.halfway]
    if failed:
        lines += ["| run | towers | seed | learning measure |", "|---|---|---|---|"]
        lines += [f"| {r.label} | {r.towers} | {r.seed} | {fmt(r.final.get(LOW_FREQ))} |" for r in failed]
        lines.append("")
        lines.append(f"{len(failed)} of {len(runs)} runs do not pass (above); the others do.")
    else:
        lines.append(f"Every run passes ({len(runs)} of {len(runs)}).")
    lines += [
        "",
        "## Split against epoch",
        "",
        "![split against epoch](figure3/split_vs_epoch.png)",
        "",
        "## Learning measure against epoch",
        "",
        "![learning measure against epoch](figure3/low_freq_vs_epoch.png)",
        "",
        "## The kernels after the last epoch",
    ]
    for towers, run in sorted(pictures.items()):
        lines += [
            "",
            f"### towers = {towers}: run {run.label}, seed {run.seed}, after {run.last_epoch} epochs",
            "",
            f"![conv1 kernels, towers={towers}](figure3/kernels_towers{towers}.png)",
        ]
    lines += ["", "Each tower's conv1 kernels in a row, tower 0 on top (one tower: one block)."]
    return "\n".join(lines) + "\n"
