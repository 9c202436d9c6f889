"""token_budget="auto": sizes from free memory (GPU memory faked here), 32768 on the CPU."""

from __future__ import annotations

import torch

from judge_core.embedded import qwen3_5_text_config
from judge_core.gptq import budget


def test_cpu_budget():
    assert budget.auto_token_budget(qwen3_5_text_config("tiny"), "cpu") == 32768


def test_bytes_per_token_of_the_4b_shape():
    cfg = qwen3_5_text_config("4b")
    per_token = budget.bytes_per_token(cfg)
    print(f"4B shape: {per_token / 1024:.0f} KiB of activations per batch token")
    # Dominated by the Gated DeltaNet torch path (8192-wide qkv, fp32 copies): between 100 KiB and 1 MiB.
    assert 100 * 1024 < per_token < 1024**2
    assert budget.bytes_per_token(cfg.to_dict()) == per_token  # config dicts work too
    assert budget.bytes_per_token({"text_config": cfg.to_dict()}) == per_token
    assert budget.bytes_per_token(qwen3_5_text_config("tiny")) < per_token


def _fake_gpu(monkeypatch, free_bytes):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_bytes, 2 * free_bytes))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)


def test_budget_follows_free_memory(monkeypatch):
    cfg = qwen3_5_text_config("4b")
    sizes = {}
    for gb in (2, 4, 12, 60):
        _fake_gpu(monkeypatch, gb * 1024**3)
        sizes[gb] = budget.auto_token_budget(cfg, "cuda")
    print(f"auto budgets by free GiB (4B shape): {sizes}")
    assert sizes[2] < sizes[4] < sizes[12] <= sizes[60] == 32768
    assert all(s % 1024 == 0 and s >= 1024 for s in sizes.values())
    # What it promises fits: budget x estimate + reserve stays within the free memory.
    per_token = budget.bytes_per_token(cfg) * 1.5
    assert sizes[4] * per_token + 512 * 1024**2 <= 4 * 1024**3
    _fake_gpu(monkeypatch, 256 * 1024**2)  # almost nothing free: the floor, the OOM split does the rest
    assert budget.auto_token_budget(cfg, "cuda") == 1024
