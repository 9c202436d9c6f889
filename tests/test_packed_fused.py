"""The compiled elementwise pieces fall back to eager (their own twins) when compiling is impossible."""

from __future__ import annotations

import logging

import pytest
import torch

from judge_core.models import fused


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    calls = []

    def broken_compile(fn, **kwargs):
        calls.append(kwargs)
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setenv("JUDGE_CORE_COMPILE", "all")
    wrapped = fused.cuda_compiled(lambda x, y: x * y)
    x = torch.randn(5, 3)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(wrapped(x, x), x * x)
        assert torch.equal(wrapped(x, x), x * x)
    assert wrapped.failed and len(calls) == 1 and calls[0]["dynamic"] is True
    assert "no compiler here" in caplog.text


def test_oom_is_not_swallowed(monkeypatch):
    def oom(*args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: oom)
    monkeypatch.setenv("JUDGE_CORE_COMPILE", "all")
    wrapped = fused.cuda_compiled(lambda x: x)
    with pytest.raises(torch.OutOfMemoryError):
        wrapped(torch.ones(2))
    assert not wrapped.failed


def test_cpu_runs_eager_by_default(monkeypatch):
    monkeypatch.delenv("JUDGE_CORE_COMPILE", raising=False)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: pytest.fail("compiled on the CPU"))
    x, w = torch.randn(4, 8), torch.randn(8)
    normed, total = fused.add_rms_norm(x, x, w, 1e-6)
    assert torch.equal(total, 2 * x)
    ref = (2 * x) * torch.rsqrt((2 * x).pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + w)
    err = (normed - ref).abs().max().item()
    print(f"add_rms_norm vs formula: max |delta| = {err:.3g}")
    assert err < 1e-5
