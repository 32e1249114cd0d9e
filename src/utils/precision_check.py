"""The precision a run uses: ``trainer.precision=auto`` picks it for the hardware, and a warning for bf16 on
a CPU that has no bf16 arithmetic, where it is slower, not faster.

``auto`` (the default): bf16 autocast (``bf16-mixed``) where the device computes in bf16 (a CUDA GPU that
supports it, a CPU with AVX512-BF16 or AMX), else 32-bit (``32-true``); the run prints which and why. A
precision given on the command line (``trainer.precision=32-true``) is used as given.

On CPUs with AVX512-BF16 or AMX, ``trainer.precision=bf16-mixed`` is faster than the fp32 step. On CPUs
without them (AVX2 only, for example) oneDNN emulates bf16 and the same step runs many times *slower*
than fp32 (both measured: docs/benchmarks.md), and nothing said why.
"""

from __future__ import annotations

import torch

BF16_PRECISIONS = ("bf16", "bf16-mixed", "bf16-true")
AUTO = "auto"


def choose_precision(requested: str | int, accelerator: str) -> tuple[str | int, str | None]:
    """``(precision, line to print)``: ``requested`` unchanged unless it is ``auto`` (module docstring).

    ``accelerator`` is ``trainer.accelerator`` (``auto``, ``cpu``, ``gpu``, ``cuda``): ``auto`` means the
    GPU when one is visible, as Lightning decides.
    """
    if str(requested) != AUTO:
        return requested, None
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        fast = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        device = "this GPU computes in bf16" if fast else "this GPU has no bf16 arithmetic"
    else:
        fast = cpu_has_fast_bf16()
        device = (
            "this CPU has bf16 arithmetic" if fast else "this CPU has no bf16 arithmetic (AVX512-BF16, AMX)"
        )
    precision = "bf16-mixed" if fast else "32-true"
    return precision, f"precision: {precision} (trainer.precision=auto: {device}; set it to override)"


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(probe()) if probe is not None else False


def slow_bf16_line(precision: str | int | None, on_cpu: bool) -> str | None:
    """The line to print when ``precision`` is bf16 on a CPU without bf16 arithmetic, else ``None``."""
    if not on_cpu or str(precision) not in BF16_PRECISIONS or cpu_has_fast_bf16():
        return None
    return (
        f"warning: trainer.precision={precision} on a CPU without bf16 arithmetic (no AVX512-BF16 or AMX): "
        "oneDNN emulates it, and a training step runs many times slower than in fp32 (18x measured on "
        "AVX2). Add trainer.precision=32-true to this command."
    )
