"""The C++ tower LRN kernel (``csrc/tower_lrn.cpp``): built once per machine, loaded once per process.

``torch.utils.cpp_extension.load`` compiles the source with the system C++ compiler and ninja into
``~/.cache/alexnet-towers/extensions/<digest>/`` (``$XDG_CACHE_HOME`` is honoured), where the digest covers
the source, the compiler flags, torch and Python, so a changed source or another CPU gets its own build.
``make install`` builds it up front; later processes only load the library.

Where the kernel cannot be built (no compiler, no ninja) ``kernel_ops()`` returns None once, with a warning
that says why, and ``src/models/lrn.py`` keeps its eager version: slower, same numbers.
``ALEXNET_TOWERS_LRN_KERNEL=0`` turns the kernel off.

Once loaded, ``forward`` is an operator autograd and torch.compile understand: its backward is the library's
``backward`` (which recomputes the scale from the input, so only the input is saved), and both have fake
(shape-only) versions, so a compiled net calls the kernel inside its graph.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "tower_lrn.cpp"
LIBRARY_NAME = "alexnet_towers_lrn"
SWITCH = "ALEXNET_TOWERS_LRN_KERNEL"
# Vector instructions the kernel's loops are compiled for, when this CPU has all of them.
_ISA_FLAGS = {"avx2": "-mavx2", "fma": "-mfma", "f16c": "-mf16c"}


def compiler_flags() -> list[str]:
    """-O3, sqrt without errno (so it vectorises), OpenMP for ``at::parallel_for``, AVX2/FMA if available."""
    flags = ["-O3", "-fno-math-errno", "-fopenmp"]
    cpu_flags = _cpu_flags()
    if set(_ISA_FLAGS) <= cpu_flags:
        flags += list(_ISA_FLAGS.values())
    return flags


def build_directory(flags: list[str]) -> Path:
    """The cache folder for this source, these flags, this torch installation and this Python.

    The torch installation's path is part of it: cpp_extension rebuilds a folder whose include paths
    changed, so two virtual environments sharing one folder would rebuild it for each other in turn.
    """
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(flags).encode(), torch.__version__.encode(), torch.__file__):
        digest.update(part if isinstance(part, bytes) else part.encode())
    digest.update(f"{sys.version_info[:2]} {platform.machine()}".encode())
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "alexnet-towers" / "extensions" / f"tower_lrn-{digest.hexdigest()[:16]}"


@functools.cache
def kernel_ops() -> Any | None:
    """``torch.ops.alexnet_towers_lrn`` (``forward``, ``backward``), or None where it is unavailable."""
    if os.environ.get(SWITCH, "1") == "0":
        log.info("tower LRN: C++ kernel off (%s=0); using the eager version", SWITCH)
        return None
    try:
        load_library()
    except Exception as error:  # noqa: BLE001 - any build failure means: use the eager version
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        log.warning("tower LRN: the C++ kernel could not be built (%s); using the eager version", reason)
        return None
    ops = getattr(torch.ops, LIBRARY_NAME)
    _register_autograd_and_fakes(ops)
    return ops


@torch.compiler.assume_constant_result
def available() -> bool:
    """Whether the kernel is loaded (building it if needed); torch.compile takes the answer as a constant."""
    return kernel_ops() is not None


def forward(x: torch.Tensor, towers: int, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """Tower LRN of ``x`` by the kernel, differentiable; call only where ``available()``."""
    return getattr(torch.ops, LIBRARY_NAME).forward(x, towers, size, alpha, beta, k)


def _output_like(x: torch.Tensor) -> torch.Tensor:
    """An empty result in the kernel's layout: channels_last stays channels_last, anything else contiguous."""
    channels_last = (
        x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    )
    return torch.empty_like(
        x, memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )


def _register_autograd_and_fakes(ops: Any) -> None:
    """Make ``ops.forward`` differentiable (by ``ops.backward``) and traceable (fake kernels) for compile."""

    def fake_forward(
        x: torch.Tensor, towers: int, size: int, alpha: float, beta: float, k: float
    ) -> torch.Tensor:
        return _output_like(x)

    def fake_backward(grad: torch.Tensor, x: torch.Tensor, *lrn: float) -> torch.Tensor:
        return _output_like(x)

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, *lrn = inputs
        ctx.save_for_backward(x)  # kept alive by the ReLU before anyway: nothing new is saved
        ctx.lrn = lrn

    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        return ops.backward(grad.to(x.dtype), x, *ctx.lrn), None, None, None, None, None

    torch.library.register_fake(f"{LIBRARY_NAME}::forward")(fake_forward)
    torch.library.register_fake(f"{LIBRARY_NAME}::backward")(fake_backward)
    torch.library.register_autograd(f"{LIBRARY_NAME}::forward", backward, setup_context=setup_context)


def load_library() -> Path:
    """Build (if needed) and load the kernel library; returns its build folder. Raises if it cannot."""
    from torch.utils import cpp_extension

    _put_ninja_on_path()
    flags = compiler_flags()
    folder = build_directory(flags)
    library = folder / f"{LIBRARY_NAME}.so"
    if library.is_file():  # the folder's name pins source, flags and torch: a library there is current
        try:
            torch.ops.load_library(str(library))
            return folder
        except OSError as error:  # e.g. another process is still linking it: cpp_extension waits its turn
            log.warning("tower LRN: %s does not load (%s); building it", library, error)
    folder.mkdir(parents=True, exist_ok=True)
    log.info("tower LRN: building the C++ kernel into %s (once, about 10 s)", folder)
    cpp_extension.load(
        name=LIBRARY_NAME,
        sources=[str(SOURCE)],
        extra_cflags=flags,
        extra_ldflags=["-fopenmp"],
        build_directory=str(folder),
        is_python_module=False,
        verbose=False,
    )
    return folder


def _put_ninja_on_path() -> None:
    """cpp_extension runs ``ninja``; the pinned PyPI ninja lives beside this interpreter, maybe off PATH."""
    if shutil.which("ninja"):
        return
    beside_python = Path(sys.executable).parent
    if (beside_python / "ninja").exists():
        os.environ["PATH"] = f"{beside_python}{os.pathsep}{os.environ.get('PATH', '')}"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


if __name__ == "__main__":  # python -m src.models.lrn_kernel: build now (make install does)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"tower LRN kernel: {load_library()}")
