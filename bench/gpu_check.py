"""``make gpu-check``: the two-tower net's training speed on one GPU in minutes, printed and, with ``--out``,
written as its own section of a markdown file (``make gpu-check``: docs/benchmarks.md).

Users train on GPUs, and a GPU may be lent for minutes only, so everything runs from one command, in this
order (the compiles take most of its time):

- the GPU's bf16 matrix rate (an 8192^3 ``torch.mm``): the ceiling the steps are a share of;
- the training step on random tensors already on the GPU (network only) at batch 256, bf16 autocast,
  channels_last, fused SGD (section 5's momentum and weight decay), eager and ``torch.compile``d; its
  training FLOPs (3 x 2 x multiply-adds, 2 x 2 for conv1) as a share of the matrix rate;
- the LRN layers' share of the eager step (section 3.3): 1 - (step with LRN) / (step with ``norm1`` and
  ``norm2`` replaced by the identity), timed in turns;
- end to end from the cache: ``Trainer.fit`` through the project's datamodule (uint8 views from the
  offline cache, PCA lighting, normalisation on the GPU) and LightningModule, eager and compiled, next to the
  network-only figure;
- with ``--data DIR`` (a folder with ``train/``): a short epoch of real photographs, end to end against the
  step alone, and validation's share (centre and ten-crop), as ``bench/epoch.py`` does on the CPU.

``--smoke`` runs the same code on the CPU with a small net and 64-pixel images in seconds
(``tests/test_bench_gpu_check.py``), compiling with the ``aot_eager`` backend (tracing and autograd
without code generation), so that the command cannot break unnoticed between GPU loans.

Nothing is written unless ``--out FILE`` says where (issue #26: a smoke run once wrote its CPU figures into
the tracked docs/benchmarks.md); ``--smoke`` never writes into docs/benchmarks.md, even when ``--out``
names it (``make gpu-check ARGS=--smoke`` prints only), since its figures describe tiny shapes on a CPU.

    python -m bench.gpu_check [--data DIR] [--cache-dir DIR] [--out docs/benchmarks.md]
    python -m bench.gpu_check --smoke [--out /tmp/benchmarks.md]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.common import Row, interleaved_rates, put_section, table, write_text_atomic
from bench.epoch import DEFAULT_CACHE, EpochSettings, epoch_rows, measure_epoch
from bench.models import Step, norm_layers, training_flops_per_image
from src.models.alexnet import AlexNet
from src.models.classifier import compile_in_place
from src.runs.paths import REPO_ROOT
from src.utils.console import quiet_lightning

TRACKED = REPO_ROOT / "docs" / "benchmarks.md"  # the kept figures: never the smoke run's
SECTION = "gpu-check"
TIME_LIMIT_S = 8 * 60  # issue #18: the whole check in under 8 minutes on one GPU


@dataclass
class CheckSettings:
    """Sizes of the check: the GPU's, or the smoke test's on a CPU."""

    device: str = "cuda"
    batch: int = 256
    size: int = 224  # section 4.1's crop
    image_size: int = 256  # section 2's cached square
    gemm_size: int = 8192
    steps: int = 10  # per timed call of the network-only step
    repeats: int = 5
    fit_steps: int = 120  # end to end: batches of Trainer.fit, the first 20 warm-up
    warm_batches: int = 20
    # The end-to-end cache: synthetic images per class, 4 % of them for validation, leaving 1536 per class
    # for training: 12 full batches of 256 an epoch, so that no short batch makes torch.compile recompile.
    per_class: int = 1600
    val_fraction: float = 0.04
    backend: str = "inductor"
    net: dict[str, Any] = field(default_factory=dict)


def smoke_settings() -> CheckSettings:
    """Tiny shapes on the CPU: the whole check in seconds."""
    return CheckSettings(
        device="cpu",
        batch=4,
        size=64,
        image_size=72,
        gemm_size=128,
        steps=1,
        repeats=2,
        fit_steps=6,
        warm_batches=2,
        per_class=13,  # 1 validation image per class, 24 training images: 6 full batches of 4
        backend="aot_eager",
        net={"conv_widths": (8, 16, 16, 16, 16), "fc_width": 32},
    )


def make_net(settings: CheckSettings, num_classes: int = 2) -> AlexNet:
    torch.manual_seed(0)
    net = AlexNet(num_classes, channels_last=True, **settings.net)
    return net.to(settings.device)


def compile_net(net: torch.nn.Module, backend: str) -> None:
    """``torch.compile`` in place: the project's way (``compile_in_place``) for inductor, else ``backend``."""
    if backend == "inductor":
        compile_in_place(net)
    else:
        net.compile(backend=backend)


def sgd(params: Any) -> torch.optim.Optimizer:
    """conf/optimizer/sgd.yaml: section 5's momentum 0.9 and weight decay 5e-4, the fused kernel."""
    return torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=5e-4, fused=True)


def matmul_rate(settings: CheckSettings) -> float:
    """GFLOP/s of a bf16 ``gemm_size``^3 matrix product on the device."""
    n = settings.gemm_size
    a = torch.randn(n, n, device=settings.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=settings.device, dtype=torch.bfloat16)

    def run() -> int:
        for _ in range(4):
            torch.mm(a, b)
        return 4

    return interleaved_rates({"mm": run}, settings.repeats)["mm"] * 2 * n**3 / 1e9


def step_runner(net: torch.nn.Module, settings: CheckSettings, lrn: str | None = None) -> Any:
    """The network-only bf16 step: ``Step`` of bench/models.py on random tensors on the device.

    ``lrn``: put these LRN layers in the net first (``none``: the identity); ``None`` keeps the net's own, as
    a compiled net must (replacing its modules would recompile it at every call).
    """
    step = Step(net, sgd(net.parameters()), "bf16-mixed", lrn=norm_layers(lrn) if lrn else None)
    return step.runner(settings.batch, settings.steps, torch.device(settings.device), settings.size)


def network_rows(settings: CheckSettings, gemm: float, flops: float) -> tuple[list[Row], dict[str, float]]:
    """Eager and compiled network-only steps, the LRN's share, each as a share of the matrix rate."""
    eager, plain = make_net(settings), make_net(settings)
    rates = interleaved_rates(
        {"eager": step_runner(eager, settings), "no LRN": step_runner(plain, settings, "none")},
        settings.repeats,
    )
    del plain
    compiled = make_net(settings)
    compile_net(compiled, settings.backend)
    run = step_runner(compiled, settings)
    start = time.perf_counter()
    run()  # the compile
    compile_seconds = time.perf_counter() - start
    rates["compiled"] = interleaved_rates({"compiled": run}, settings.repeats)["compiled"]
    tag = f"bf16-mixed, channels_last, batch {settings.batch}"
    rows = [
        Row(
            f"GPU step, network only, {kind}, {tag}",
            rates[kind],
            "img/s",
            f"{rates[kind] * flops / 1e9 / gemm:.0%} of the bf16 matmul rate"
            + (f"; compiling took {compile_seconds:.0f} s" if kind == "compiled" else ""),
        )
        for kind in ("eager", "compiled")
    ]
    rows.append(
        Row(
            f"GPU step: LRN's share of the eager step (1 - with / without LRN), {tag}",
            100 * (1 - rates["eager"] / rates["no LRN"]),
            "%",
            f"without LRN: {rates['no LRN']:.0f} img/s",
        )
    )
    return rows, rates


def end_to_end_rows(settings: CheckSettings, network: dict[str, float], data_root: Path) -> list[Row]:
    """``Trainer.fit`` from the cache of the synthetic set, eager and compiled, against the network alone."""
    import lightning as L

    from bench.epoch import Clock
    from src.config.compose import constant_rate_module
    from src.data.datamodule import ImageDataModule

    rows = []
    for kind in ("eager", "compiled"):
        datamodule = ImageDataModule(
            root=data_root,
            num_classes=2,
            cache_dir=data_root.parent / "cache",
            batch_size=settings.batch,
            image_size=settings.image_size,
            crop_size=settings.size,
            val_fraction=settings.val_fraction,
        )
        net = make_net(settings)
        if kind == "compiled":
            compile_net(net, settings.backend)
        clock = Clock()
        trainer = L.Trainer(
            accelerator="gpu" if settings.device == "cuda" else "cpu",
            devices=1,
            precision="bf16-mixed",
            max_steps=settings.fit_steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[clock],
        )
        trainer.fit(constant_rate_module(net, sgd), datamodule=datamodule)
        timing = clock.timing("train", settings.warm_batches)
        rows.append(
            Row(
                f"GPU training end to end from the cache (datamodule, Lightning), {kind}, bf16-mixed, "
                f"channels_last, batch {settings.batch}",
                timing.rate,
                "img/s",
                f"{timing.rate / network[kind]:.2f}x the network only; {timing.batches} batches timed "
                f"after {settings.warm_batches}; {datamodule.num_workers} workers",
            )
        )
    return rows


def real_epoch_rows(settings: CheckSettings, data: Path, cache_dir: Path) -> list[Row]:
    """A short epoch of real photographs on the device (bench/epoch.py's rows at the check's batch)."""
    workers = min(8, (os.cpu_count() or 2) - 1)
    epoch = EpochSettings(
        batch=settings.batch,
        precision="bf16-mixed",
        accelerator="gpu" if settings.device == "cuda" else "cpu",
        warm_batches=settings.warm_batches // 2,
        timed_batches=settings.warm_batches,
        step_repeats=settings.steps,
        val_timed_batches={"centre": 2, "ten": 2},
        workers=(workers,),
        val_workers=workers,
        image_size=settings.image_size,
        crop_size=settings.size,
        net=settings.net,
    )
    rows = epoch_rows(measure_epoch(data, cache_dir, epoch))
    return [Row(f"GPU {r.name}", r.value, r.unit, r.note) for r in rows]


def measure(settings: CheckSettings, data: Path | None, cache_dir: Path) -> list[Row]:
    """Every row of the check, in order."""
    flops = training_flops_per_image(AlexNet(2, **settings.net), settings.size)
    gemm = matmul_rate(settings)
    name = torch.cuda.get_device_name() if settings.device == "cuda" else f"CPU smoke, {platform.machine()}"
    rows = [Row(f"GPU bf16 matmul {settings.gemm_size}^3 ({name})", gemm, "GFLOP/s")]
    network, rates = network_rows(settings, gemm, flops)
    rows += network
    with tempfile.TemporaryDirectory() as tmp:
        from src.datasets.synthetic import generate_dataset

        root = generate_dataset(
            Path(tmp) / "synthetic", settings.per_class, 1, image_size=settings.image_size, seed=0
        )
        rows += end_to_end_rows(settings, rates, root)
    if data is not None:
        rows += real_epoch_rows(settings, data, cache_dir)
    else:
        rows.append(Row("GPU real epoch rows", float("nan"), "", "skipped: no --data DIR given"))
    return rows


def markdown(rows: list[Row], settings: CheckSettings, seconds: float, command: str) -> str:
    """The docs/benchmarks.md section of this check."""
    machine = {
        "device": torch.cuda.get_device_name() if settings.device == "cuda" else "CPU (smoke mode)",
        "cuda": str(torch.version.cuda),
        "torch": torch.__version__,
        "cpus": str(os.cpu_count()),
        "date": time.strftime("%Y-%m-%d"),
        "took": f"{seconds:.0f} s",
    }
    return "\n".join(
        [
            "## GPU check",
            "",
            f"Written by `{command}` (bench/gpu_check.py); `make bench` keeps this section as it is.",
            "",
            "Machine: " + ", ".join(f"{k}: {v}" for k, v in machine.items()),
            "",
            table(rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, in seconds (tests)")
    parser.add_argument("--data", type=Path, help="a folder with train/: a short epoch of real photographs")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, help="the markdown file to update (default: print only)")
    args = parser.parse_args(argv)
    if args.smoke and args.out is not None and args.out.resolve() == TRACKED.resolve():
        print(f"--smoke: its figures are not a GPU's and are never written into {TRACKED}", file=sys.stderr)
        args.out = None  # make gpu-check ARGS=--smoke: printed only
    if args.smoke:
        settings = smoke_settings()
    elif torch.cuda.is_available():
        settings = CheckSettings()
    else:
        print(
            "no GPU here: make gpu-check needs CUDA (--smoke runs the same code on the CPU)", file=sys.stderr
        )
        return 2
    quiet_lightning()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # "GPU available: ...", per Trainer
    start = time.perf_counter()
    data = args.data.expanduser() if args.data else None
    rows = measure(settings, data, args.cache_dir.expanduser())
    seconds = time.perf_counter() - start
    print(table(rows))
    command = "python -m bench.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:])
    limit = "" if seconds < TIME_LIMIT_S or args.smoke else f" (over the {TIME_LIMIT_S // 60}-minute target)"
    if args.out is None:
        print(f"took {seconds:.0f} s{limit}; not written anywhere (--out FILE writes it)", file=sys.stderr)
        return 0
    old = args.out.read_text() if args.out.exists() else ""
    write_text_atomic(args.out, put_section(old, SECTION, markdown(rows, settings, seconds, command.strip())))
    print(f"took {seconds:.0f} s{limit}; written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
