"""The bf16-on-a-slow-CPU warning (src/utils/precision_check.py)."""

from __future__ import annotations

import pytest

from src.utils import precision_check


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true", "bf16"])
def test_bf16_on_a_cpu_without_bf16_says_to_use_fp32(monkeypatch, precision: str) -> None:
    monkeypatch.setattr(precision_check, "cpu_has_fast_bf16", lambda: False)
    line = precision_check.slow_bf16_line(precision, on_cpu=True)
    assert line is not None and f"trainer.precision={precision} on a CPU" in line
    assert "trainer.precision=32-true" in line


def test_no_warning_for_fp32_for_a_gpu_or_for_a_cpu_with_bf16(monkeypatch) -> None:
    monkeypatch.setattr(precision_check, "cpu_has_fast_bf16", lambda: False)
    assert precision_check.slow_bf16_line("32-true", on_cpu=True) is None
    assert precision_check.slow_bf16_line("bf16-mixed", on_cpu=False) is None
    monkeypatch.setattr(precision_check, "cpu_has_fast_bf16", lambda: True)
    assert precision_check.slow_bf16_line("bf16-mixed", on_cpu=True) is None
