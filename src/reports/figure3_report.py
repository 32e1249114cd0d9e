"""Figure 3 on real photographs: the report of ``experiment=figure3`` runs (``docs/figure3.md``).

    python -m src.reports.figure3_report RUN_OR_FOLDER_OR_GLOB [...] [--out OUT] [--band-seeds 200]

Section 6.1 / figure 3 of Krizhevsky et al. (NIPS 2012): the two towers' conv1 kernels split into a
colour-agnostic and a colour-specific group. The sweep (docs/figure3-experiment.md) trains each arm
(``model.towers=1``: the control, whose two kernel halves are compared; 2; optionally 4) over a few seeds.
This module reads what the runs logged and writes, under ``--out``
(by default ``<the runs' folder>/report/``: a sweep's report goes into the sweep, and nothing committed is
overwritten; ``--out docs`` is the act that updates the committed ``docs/figure3.md`` and ``docs/figure3/``)

    <out>/figure3.md                      a table per arm (mean and sd over seeds), the halfway check, the
                                          plots and a statement generated from the numbers
    <out>/figure3/epochs.csv              per run and epoch trained: val/acc and the kernels/* scores
    <out>/figure3/runs.csv                per run: its final numbers (what the tables are made from), and
                                          ``path``, the run's folder relative to ``<out>/figure3/``
    <out>/figure3/split_vs_epoch.png      kernels/split per run, the random-initialisation band per arm and
                                          CaffeNet's split
    <out>/figure3/low_freq_vs_epoch.png   the learning measure per run, the random level and CaffeNet's
    <out>/figure3/kernels_towers{t}.png   the last figure-3 picture of one run per arm

The CSVs are plain (the header row first, as ``csv.DictReader`` and ``pandas.read_csv`` expect); the command
that made them is the first line of ``figure3.md`` and the ``Comment`` of each PNG.

Each argument is a run folder (one holding ``csv/version_*/metrics.csv``), a folder searched for run folders
(a sweep folder, ``outputs/``), or a glob of either. Read from each run:

- ``csv/version_*/metrics.csv`` (the CSV log every logger config keeps). The kernel scores
  are on the rows with ``kernels/epochs_trained`` (0: at initialisation); ``val/acc`` on rows whose
  ``epoch`` E means E + 1 epochs trained; ``test/acc`` once, after fitting. A resumed run continues in
  ``version_1``, ...: the versions are read in order, later values win.
- ``.hydra/config.yaml``: ``model.towers`` and ``seed``.
- ``kernels/epoch_NNN_figure3.png``: the pictures, and the wall time (below).
- ``run.json`` in a run kept by :mod:`src.reports.run_archive` (a copy of the results alone, as
  ``docs/figure3/runs/`` holds): the wall times recorded when it was kept.

**Wall time.** The runs log no duration, so it is read from file times. ``fit_s``: from the picture at
initialisation (written when training starts, after the data cache is ready) to the last epoch's picture
(written after its validation): all training and per-epoch validation, no cache building, no test; the
tables show it. ``job_s`` (CSV only): from ``.hydra/config.yaml`` (written when the job starts) to the last
write of ``metrics.csv`` (after the test): the whole job. A resumed run has one ``csv/version_*`` per
process, each starting with its ``hparams.yaml``: the time between a stop and the resume is left out of
both (``fit_s`` counts an epoch from the later of its previous picture and the last process start before
its own picture, so the part of an epoch lost at the stop is left out too; ``job_s`` sums each process's
``hparams.yaml`` to its last ``metrics.csv`` write). Both are lost when run folders are copied without their
times (copy with ``cp -p`` or ``rsync -t``).

**References.** The random-initialisation band of an arm is the mean +- 2 sd of the split of freshly
initialised nets with its tower count (the project's ``model.init=kaiming_paper_conv1``; conv1 is all that is
scored, so the later layers are built tiny), over ``--band-seeds`` seeds. CaffeNet's split and learning
measure come from its recovered conv1 (:mod:`src.analysis.reference_kernels`) through the same
:func:`~src.analysis.colour.stats_for_model_kernels` as training logs. The learning measure is
``kernels/low_freq`` (:mod:`src.analysis.smoothness`): 0.174 for random kernels, about 0.73 for CaffeNet's; a
run passes the halfway check when its final value is at least halfway from the first to the second.

The work is split by job: reading the runs (:mod:`src.reports.figure3_runs`), the references
(:mod:`src.reports.figure3_references`), the numbers and CSVs (:mod:`src.reports.figure3_numbers`), the plots
(:mod:`src.reports.figure3_plots`) and the text (:mod:`src.reports.figure3_markdown`); this module writes the
files. Training never imports any of them.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

from src.reports.figure3_markdown import markdown
from src.reports.figure3_numbers import csv_text, epoch_columns, run_columns, run_row, tower_groups
from src.reports.figure3_plots import low_freq_plot, png_info, save_figure, split_plot
from src.reports.figure3_references import DEFAULT_BAND_SEEDS, Reference, caffenet_reference, random_band
from src.reports.figure3_runs import LOW_FREQ, Run, by_arm, find_run_dirs, read_runs
from src.runs.paths import REPO_ROOT

__all__ = ["default_out", "main", "write_report"]

COMMAND = "python -m src.reports.figure3_report"
REPORT_DIR = "report"  # without --out, the report goes to <the sweep folder>/report/
DOCS = REPO_ROOT / "docs"  # the committed documentation, archived runs included: never a default output


def write_report(
    run_dirs: Sequence[Path],
    out: Path,
    band_seeds: int = DEFAULT_BAND_SEEDS,
    reference: Reference | None = None,
    command: str = COMMAND,
) -> Path:
    """Write ``<out>/figure3.md`` and ``<out>/figure3/`` from the runs; return the markdown's path."""
    runs = read_runs(run_dirs)
    reference = reference or caffenet_reference()
    for run in runs:
        low_freq = run.final.get(LOW_FREQ)
        run.halfway = None if low_freq is None else low_freq >= reference.halfway
    bands = {t: random_band(t, band_seeds) for t in sorted({r.towers for r in runs})}
    header = f"generated by: {command} -- do not edit; rerun the command"
    folder = out / "figure3"
    folder.mkdir(parents=True, exist_ok=True)
    groups = tower_groups(runs)
    epoch_rows = (
        run.epochs[e] | {"run": run.label, "towers": run.towers, "seed": run.seed, "epoch": e}
        for run in runs
        for e in sorted(run.epochs)
    )
    (folder / "epochs.csv").write_text(csv_text(epoch_columns(groups), epoch_rows))
    run_rows = (run_row(run, folder) for run in runs)
    (folder / "runs.csv").write_text(csv_text(run_columns(groups), run_rows))
    save_figure(split_plot(runs, bands, reference), folder / "split_vs_epoch.png", header)
    save_figure(low_freq_plot(runs, reference), folder / "low_freq_vs_epoch.png", header)
    pictures: dict[int, Run] = {}
    for towers, arm in by_arm(runs).items():
        shown = next((r for r in arm if r.picture is not None), None)
        if shown is not None:
            with Image.open(shown.picture) as image:
                image.save(folder / f"kernels_towers{towers}.png", pnginfo=png_info(header))
            pictures[towers] = shown
    path = out / "figure3.md"
    path.write_text(markdown(runs, bands, reference, header, pictures))
    return path


def default_out(sources: Iterable[str | os.PathLike[str]], docs: Path = DOCS) -> Path:
    """Where the report goes without ``--out``: ``report/`` in the folder the sources share (the sweep
    folder given, or the one above the run folders or the glob's matches), never over the committed report.

    Raises:
        SystemExit: for runs inside ``docs`` (the committed archives, ``docs/figure3/runs``): a default
            must not write into the committed documentation, so ``--out`` must say where.
    """
    sources = list(sources)
    paths = []
    for source in sources:
        text = str(source)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        paths += [os.path.abspath(p) for p in matches if Path(p).is_dir()]
    if not paths:
        raise FileNotFoundError(f"{', '.join(map(str, sources))}: no folder there to write the report under")
    common = Path(os.path.commonpath(paths))
    if common.is_relative_to(docs.resolve()):
        raise SystemExit(
            f"error: {common} is inside {docs}, the committed documentation: without --out the report would "
            f"be written there; name where it goes: --out docs to update the committed report, or "
            f"--out <folder> for a copy elsewhere"
        )
    return common / REPORT_DIR


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="run folders, folders above runs (a sweep), or globs")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"writes OUT/figure3.md and OUT/figure3/ (default: {REPORT_DIR}/ in the sweep or runs' folder; "
        "--out docs updates the committed report)",
    )
    parser.add_argument("--band-seeds", type=int, default=DEFAULT_BAND_SEEDS, help="fresh nets per arm")
    args = parser.parse_args(argv)
    run_dirs = find_run_dirs(args.sources)
    out = default_out(args.sources) if args.out is None else args.out
    markdown = write_report(run_dirs, out, args.band_seeds, command=f"{COMMAND} {shlex.join(argv)}")
    print(f"wrote {markdown} and {markdown.parent / 'figure3'}/")


if __name__ == "__main__":
    main()
