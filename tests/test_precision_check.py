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


@pytest.mark.parametrize(("fast", "expected"), [(False, "32-true"), (True, "bf16-mixed")])
def test_auto_picks_bf16_only_where_the_cpu_computes_in_it(monkeypatch, fast: bool, expected: str) -> None:
    monkeypatch.setattr(precision_check, "cpu_has_fast_bf16", lambda: fast)
    precision, line = precision_check.choose_precision("auto", "cpu")
    assert precision == expected and line is not None
    assert line.startswith(f"precision: {expected} (trainer.precision=auto: this CPU has")


def test_auto_on_a_gpu_asks_the_gpu(monkeypatch) -> None:
    monkeypatch.setattr(precision_check.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision_check.torch.cuda, "is_bf16_supported", lambda: True)
    assert precision_check.choose_precision("auto", "auto")[0] == "bf16-mixed"
    monkeypatch.setattr(precision_check.torch.cuda, "is_bf16_supported", lambda: False)
    assert precision_check.choose_precision("auto", "gpu")[0] == "32-true"


@pytest.mark.parametrize("given", ["32-true", "bf16-mixed", 16])
def test_an_explicit_precision_is_used_as_given(monkeypatch, given: str | int) -> None:
    monkeypatch.setattr(precision_check, "cpu_has_fast_bf16", lambda: False)
    assert precision_check.choose_precision(given, "cpu") == (given, None)
