"""``make bench``: training-step and data-pipeline speed in one run, printed and, with ``--out``, written.

Every comparison is a ratio of figures measured one after the other in this run: these machines are noisy,
so absolute numbers from different runs do not compare. Each figure is the median of the repeats after
warm-up. The parts (``--only``):

- ``models``: the paper's two-tower net (``bench/models.py``): the convolution ceiling, the steps as shares
  of it, LRN, the profile;
- ``small64``: the 64-pixel net (``layers=small64``, 56-pixel crops, 200 classes): its size, its own
  convolution ceiling and the training defaults' step at batch 128 as a share of it (``member_rows``);
- ``data``: the data pipeline (``bench/data.py``);
- ``epoch``: with ``--data DIR``, real epochs of the photographs in ``DIR`` (``bench/epoch.py``, in a child
  process that keeps freed memory as training does), for the net ``--net`` names, at its data recipe's
  sizes: ``paper`` (256 cached, 224 crops) or ``small64`` (64 cached, 56 crops). Without ``--net`` the
  folder's ``prepared.json`` decides: a Tiny ImageNet folder gets ``small64``.

Nothing is written unless ``--out FILE`` says where: without it the table is printed and that is all, so
that a smoke test (``--quick``) or a run on a busy machine cannot replace the figures kept in the tracked
docs/benchmarks.md by accident. ``make bench`` passes ``--out docs/benchmarks.md``; a ``--quick`` run is
never written there (``make bench ARGS=--quick`` prints only). In ``FILE`` every part
(and the real epochs of each net) has its own section, with the command, the machine, the load and the
date of the run that measured it: a run replaces the sections of the parts it measured and keeps the others
(a part with nothing measured, such as ``epoch`` without ``--data``, keeps its old figures), and the GPU
check's section (``make gpu-check``) stays at the end.

    python -m bench.run [--quick] [--only models,small64,data,epoch] [--data DIR [--net paper|small64]
                        [--cache-dir DIR]] [--note TEXT] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import lightning
import torch

from bench.common import (
    NETS,
    Row,
    get_section,
    net_for_data,
    put_section,
    section_names,
    table,
    write_text_atomic,
)
from bench.data import data_rows
from bench.epoch import DEFAULT_CACHE, epoch_rows, skipped_rows
from bench.models import member_rows, model_rows, precisions
from src.runs.paths import REPO_ROOT

TRACKED = REPO_ROOT / "docs" / "benchmarks.md"  # the kept figures: never a --quick run's
MEMBERS = tuple(name for name in NETS if name != "paper")  # the other members of the family
PARTS = ("models", *MEMBERS, "data", "epoch")
FALLBACK_STEP = 50.0  # img/s for the data rows' ratios when the models part is not run (--only)


def section_title(section: str) -> str:
    """The heading of a section of the file: ``models``, a member, ``data`` or ``epoch <net>``."""
    if section == "models":
        return "The two-tower net (224-pixel crops): steps, convolution ceiling, LRN, profile"
    if section == "data":
        return "The data pipeline: decoders, cache, loader"
    net = section.removeprefix("epoch ")
    name = (
        "the two-tower net (224-pixel crops)" if net == "paper" else f"the {NETS[net].image_size}-pixel net"
    )
    if section.startswith("epoch "):
        return f"Real epochs: {name}"
    return name[0].upper() + name[1:]


def section_order() -> list[str]:
    """Every section ``make bench`` writes, in the file's order: each member's step, then its epochs."""
    return ["models", "data", "epoch paper"] + [s for net in MEMBERS for s in (net, f"epoch {net}")]


def mark(section: str) -> str:
    """The name of a section's HTML marks in the file (``bench: epoch small64``)."""
    return f"bench: {section}"


def measure(
    quick: bool, data: Path | None, net: str, cache_dir: Path, parts: tuple[str, ...]
) -> dict[str, tuple[list[Row], float]]:
    """The rows of each section measured, in the order run, with the seconds each part took."""
    sections: dict[str, tuple[list[Row], float]] = {}
    step_rate = FALLBACK_STEP
    for part in (p for p in PARTS if p in parts):  # models first: the data rows compare with its step
        start = time.perf_counter()
        if part == "models":
            rows, step_rate = model_rows(quick)
        elif part == "data":
            rows = data_rows(quick, step_rate)
        elif part == "epoch":
            rows = real_epoch_rows(data, net, cache_dir, quick)
            part = f"epoch {net}"
        else:
            rows = member_rows(part, quick)
        sections[part] = rows, time.perf_counter() - start
    return sections


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def vector_units() -> str:
    """The CPU's widest vector and bf16 instructions (what the oneDNN kernels can use): ``AVX2``, ..."""
    try:
        flags = next(
            set(line.split(":", 1)[1].split())
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return "unknown"
    names = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}
    found = [name for flag, name in names.items() if flag in flags]
    return " ".join(found) or "no AVX2"


def machine(command: str) -> dict[str, str]:
    """What a section says about the run: the command and the machine (its load comes later)."""
    return {
        "command": command,
        "cpu": cpu_model(),
        "vector units": vector_units(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def command_line(argv: list[str]) -> str:
    """The command as a shell would take it, the ``--note`` text (printed below it) left out."""
    shown = []
    for i, arg in enumerate(argv):
        if i > 0 and argv[i - 1] == "--note":
            arg = "<the note below>"
        elif arg.startswith("--note="):
            arg = "--note=<the note below>"
        shown.append(arg)
    return shlex.join(["python", "-m", "bench.run", *shown])


def real_epoch_rows(data: Path | None, net: str, cache_dir: Path, quick: bool) -> list[Row]:
    """bench/epoch.py in a child process per precision; a row saying why when there is no data folder."""
    if data is None:
        return skipped_rows('no data folder given (make bench ARGS="--data DIR")')
    if not (data / "train").is_dir():
        return skipped_rows(f"{data} has no train/ folder")
    rows = []
    for precision in precisions():
        command = [sys.executable, "-m", "bench.epoch", "--data", str(data), "--cache-dir", str(cache_dir)]
        command += ["--net", net, "--precision", "32-true" if precision == "fp32" else "bf16-mixed"]
        command += ["--quick"] if quick else []
        out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, cwd=REPO_ROOT)
        rows += epoch_rows(json.loads(out.stdout.strip().splitlines()[-1]))
    if "bf16" not in precisions():
        rows += skipped_rows("bf16: this CPU has no bf16 arithmetic (oneDNN emulates it, many times slower)")
    return rows


BEFORE = (
    "Before (issue #18, the 2026-11-22 run on a 2-core AVX-512-bf16 CPU, batch 32, against conv3's forward "
    "alone): the fp32 step at 63 % and the bf16 step at 53 % of their convolution ceilings; no real-epoch, "
    "batch-128 or validation figures."
)


def closing_note(rows: list[Row], before: bool = False) -> list[str]:
    """The summary that closes a section: the rows' headline figures (issue #18's targets among them), and
    for the two-tower net's section the figures before issue #18."""
    lines = [f"- {r.summary}" for r in rows if r.summary]
    if not lines:
        return []
    return ["### Summary", "", *lines, "", *([BEFORE, ""] if before else [])]


HEADER = [
    "# Benchmarks",
    "",
    "Written by `make bench` (`python -m bench.run --out docs/benchmarks.md`, bench/run.py). Each section is",
    "from one run, named with its command, machine, load and date; a run replaces the sections of the parts",
    "it measured. Ratios are measured in one process, one after the other: compare ratios within a section,",
    "not absolute figures across sections or runs.",
    "",
]


def section_text(section: str, rows: list[Row], about: dict[str, str], note: str) -> str:
    """One section of the file: its heading, the run's machine line, the load, the table, the summary."""
    text = [
        f"## {section_title(section)}",
        "",
        "Machine: " + ", ".join(f"{k}: {v}" for k, v in about.items()),
    ]
    if note:
        text += ["", f"Note: {note}"]
    text += ["", table(rows), ""]
    text += closing_note(rows, before=section == "models")
    return "\n".join(text)


def write_markdown(
    path: Path, sections: dict[str, tuple[list[Row], float]], about: dict[str, str], note: str = ""
) -> list[str]:
    """Replace the measured sections of ``path`` (the rest kept, the GPU check's last); the names kept.

    A section whose rows are all unmeasured (skipped) keeps the file's previous figures, if it has any.
    Text outside the sections (the header, a file from before the sections) is written anew.
    """
    old = path.read_text() if path.exists() else ""
    new = {}
    for section, (rows, seconds) in sections.items():
        if all(math.isnan(r.value) for r in rows) and get_section(old, mark(section)) is not None:
            continue
        body = section_text(section, rows, about | {"took": f"{seconds:.0f} s"}, note)
        new[section] = put_section("", mark(section), body).strip()
    known = [mark(s) for s in section_order()]
    others = [name for name in section_names(old) if name not in known]
    parts = []
    for section in section_order():
        text = new.get(section) or get_section(old, mark(section))
        if text:
            parts.append(text)
    parts += [get_section(old, name) for name in others]  # the GPU check's, make gpu-check writes it
    write_text_atomic(path, "\n".join(HEADER) + "\n" + "\n\n".join(p for p in parts if p) + "\n")
    return [section for section in sections if section not in new]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (a smoke test)")
    parser.add_argument("--data", type=Path, help="a folder with train/ (class folders): the real-epoch rows")
    parser.add_argument(
        "--net", choices=tuple(NETS), help="the net of the real epochs (default: from --data's prepared.json)"
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="the datamodule's cache_dir")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    parser.add_argument("--note", default="", help="a line for each written section (the machine's load)")
    parser.add_argument("--out", type=Path, help="the markdown file to update (default: print only)")
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown parts {sorted(unknown)}; choose from {PARTS}")
    if args.quick and args.out is not None and args.out.resolve() == TRACKED.resolve():
        print(f"--quick: smoke-test figures are never written into {TRACKED}", file=sys.stderr)
        args.out = None  # make bench ARGS=--quick: printed only
    data = args.data.expanduser() if args.data else None
    net = args.net or (net_for_data(data) if data is not None else "paper")
    about = machine(command_line(argv if argv is not None else sys.argv[1:]))
    load = os.getloadavg()[0]
    sections = measure(args.quick, data, net, args.cache_dir.expanduser(), parts)
    about["load average (1 min)"] = f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(table([row for rows, _ in sections.values() for row in rows]))
    if args.out is None:
        print(
            "not written anywhere: --out FILE writes the figures (make bench: docs/benchmarks.md)",
            file=sys.stderr,
        )
        return
    kept = write_markdown(args.out, sections, about, args.note)
    print(f"written to {args.out}" + (f"; kept the old figures of {kept}" if kept else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
