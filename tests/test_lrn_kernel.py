"""Building the C++ tower LRN kernel: a clean build, its cache folder, the fallback when it cannot build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.models import lrn_kernel
from tests.conftest import ROOT

# In a child process: LRN on a small tensor, against torch's LRN per tower; prints which version ran.
CHILD = """
import logging, torch
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
from src.models.lrn import kernel_applies, reference_local_response_norm, tower_local_response_norm
x = torch.rand(2, 8, 3, 3) * 50
error = (tower_local_response_norm(x, 2) - reference_local_response_norm(x, 2)).abs().max().item()
print("kernel" if kernel_applies(x) else "eager", "max error", error)
"""


def run_child(code: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "XDG_CACHE_HOME": str(cache), **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_a_clean_cache_builds_the_library_where_make_install_puts_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "src.models.lrn_kernel"],
        cwd=ROOT,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "alexnet-towers" / "extensions"
    libraries = list(folder.glob("tower_lrn-*/alexnet_towers_lrn*.so"))
    assert len(libraries) == 1
    assert f"tower LRN kernel: {libraries[0].parent}" in result.stdout
    assert "building the C++ kernel" in result.stderr
    again = run_child(CHILD, tmp_path)  # a second process only loads it
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("kernel") and "building" not in again.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CXX": "/bin/false"}, "the C++ kernel could not be built"),
        ({lrn_kernel.SWITCH: "0"}, "C++ kernel off (ALEXNET_TOWERS_LRN_KERNEL=0)"),
    ],
    ids=["no-compiler", "switched-off"],
)
def test_without_the_kernel_the_eager_version_gives_the_same_numbers(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = run_child(CHILD, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert message in result.stderr
    version, _, _, error = result.stdout.split()
    assert version == "eager" and float(error) < 1e-4


def test_the_build_folder_follows_the_source_and_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = lrn_kernel.build_directory(["-O3"])
    assert folder.parent == tmp_path / "alexnet-towers" / "extensions"
    assert folder == lrn_kernel.build_directory(["-O3"])
    assert folder != lrn_kernel.build_directory(["-O3", "-mavx2"])
    source = tmp_path / "tower_lrn.cpp"
    source.write_text(lrn_kernel.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(lrn_kernel, "SOURCE", source)
    changed = lrn_kernel.build_directory(["-O3"])
    assert changed != folder
    # Another virtual environment's torch: its own folder (cpp_extension would rebuild a shared one in turns).
    monkeypatch.setattr(lrn_kernel.torch, "__file__", "/elsewhere/.venv/torch/__init__.py")
    assert lrn_kernel.build_directory(["-O3"]) not in (folder, changed)


def test_vector_flags_only_where_the_cpu_lists_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lrn_kernel, "_cpu_flags", lambda: {"sse2", "avx2", "fma", "f16c"})
    assert {"-mavx2", "-mfma", "-mf16c", "-fopenmp", "-O3"} <= set(lrn_kernel.compiler_flags())
    monkeypatch.setattr(lrn_kernel, "_cpu_flags", lambda: {"sse2", "avx2"})  # no FMA: the baseline ISA
    assert not any(flag.startswith("-m") for flag in lrn_kernel.compiler_flags())
