"""Warm-up and kernel caches (judge_core/warmup.py): warm-up changes no result; the CLI runs; on CUDA a
warm process meets new batch shapes without tuning any kernel again."""

from __future__ import annotations


import pytest
import torch

from judge_core import warmup as wu


def _backend(name, path):
    from transformers import AutoTokenizer

    from judge_core.backends import load_backend
    from judge_core.specs import load_spec
    from judge_core.specs.render import label_token_ids

    ids = label_token_ids(AutoTokenizer.from_pretrained(str(path)), load_spec())
    return load_backend(name, str(path), dtype=torch.float32, device=torch.device("cpu"), label_ids=ids)


def test_shapes_cover_full_pack_and_every_size_bucket():
    budget = 16384
    shapes = wu.warmup_shapes(budget, 32768)
    totals = sorted({sum(s) for s in shapes})
    assert max(totals) == budget                                     # the maximum-size pack
    assert all(max(s) <= 32768 and min(s) >= 1 for s in shapes)
    # every 2048-token size bucket up to the budget has a pack ending in it
    buckets = {-(-t // wu.LADDER_STEP_TOKENS) for t in totals}
    assert buckets == set(range(1, budget // wu.LADDER_STEP_TOKENS + 1))
    counts = {len(s) for s in shapes}
    assert 1 in counts and budget // wu.SHORT_PROMPT_TOKENS in counts  # one long prompt, many short ones
    # a context shorter than the budget caps every prompt
    assert all(max(s) <= 3000 for s in wu.warmup_shapes(budget, 3000))
    # padded backends: rows x width never over the budget
    assert all(len(s) * max(s) <= budget for s in wu.warmup_shapes(budget, 32768, counts_padding=True))
    with pytest.raises(ValueError, match="token_budget"):
        wu.warmup_shapes(0, 100)


@pytest.mark.parametrize("name", ["packed", "hf"])
def test_warmup_changes_no_result(tiny_text_ckpt, name):
    backend = _backend(name, tiny_text_ckpt)
    g = torch.Generator().manual_seed(0)
    batch = [torch.randint(0, 248000, (n,), generator=g).tolist() for n in (37, 120, 5, 64)]
    before = backend.candidate_logits(batch)
    stats = wu.warmup(backend, token_budget=1024, max_context=512)
    after = backend.candidate_logits(batch)
    print(f"{name}: warm-up ran {stats['packs']} packs, {stats['tokens']} tokens; "
          f"max |d logits| = {(before - after).abs().max().item():.2e}")
    assert stats["packs"] == len(wu.warmup_shapes(1024, 512, counts_padding=backend.counts_padding))
    assert torch.equal(before, after)
    assert wu.maybe_warmup(backend, 1024) is None  # CPU: nothing tunes, no load-time warm-up by default


def test_configure_kernel_caches_keeps_user_choices(monkeypatch, tmp_path):
    monkeypatch.setattr(wu, "_configured", None)
    monkeypatch.setenv("JUDGE_CORE_CACHE", str(tmp_path / "jc"))
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_AUTOTUNING", raising=False)
    monkeypatch.setenv("FLA_CACHE_RESULTS", "0")  # a user's explicit choice stays
    got = wu.configure_kernel_caches()
    assert got == {"TRITON_CACHE_DIR": str(tmp_path / "jc" / "triton"), "TRITON_CACHE_AUTOTUNING": "1",
                   "FLA_CACHE_RESULTS": "0"}
    assert (tmp_path / "jc" / "triton").is_dir()
    monkeypatch.setattr(wu, "_configured", None)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "mine"))
    assert wu.configure_kernel_caches()["TRITON_CACHE_DIR"] == str(tmp_path / "mine")
    monkeypatch.setattr(wu, "_configured", None)  # leave the process as configure would find it


def test_warmup_cli(tiny_text_ckpt, capsys, monkeypatch, tmp_path):
    from judge_core.cli.main import main

    monkeypatch.setattr(wu, "_configured", None)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    assert main(["warmup", str(tiny_text_ckpt), "--device", "cpu", "--token-budget", "512"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "warmed up" in out and str(tmp_path / "triton") in out
    monkeypatch.setattr(wu, "_configured", None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="kernel autotuning happens on CUDA only")
def test_no_autotuning_after_warmup_on_new_shapes(tiny_text_ckpt):
    """After warm-up, batches of shapes never seen before run without one autotune benchmark."""
    pytest.importorskip("triton")
    from triton.runtime.autotuner import Autotuner
    from transformers import AutoTokenizer

    from judge_core.backends import load_backend
    from judge_core.specs import load_spec
    from judge_core.specs.render import label_token_ids

    wu.configure_kernel_caches()
    ids = label_token_ids(AutoTokenizer.from_pretrained(str(tiny_text_ckpt)), load_spec())
    backend = load_backend("packed", str(tiny_text_ckpt), dtype=torch.bfloat16, device=torch.device("cuda"),
                           label_ids=ids)
    budget = 8192
    wu.warmup(backend, budget, 8192)
    benchmarks = []
    original = Autotuner._bench

    def counting(self, *args, **kwargs):
        benchmarks.append(getattr(self.fn, "__name__", str(self.fn)))
        return original(self, *args, **kwargs)

    Autotuner._bench = counting
    try:
        g = torch.Generator().manual_seed(1)
        for lengths in ([3001, 2999, 1500], [77] * 50, [8000], [1234, 4321, 17, 900, 1]):
            backend.candidate_logits([torch.randint(0, 248000, (n,), generator=g).tolist() for n in lengths])
        torch.cuda.synchronize()
    finally:
        Autotuner._bench = original
    print(f"autotune benchmarks after warm-up: {len(benchmarks)} ({sorted(set(benchmarks))})")
    assert benchmarks == []


def test_cpu_load_creates_no_triton_cache_dir(tiny_text_ckpt, monkeypatch, tmp_path):
    """Triton never runs on a CPU machine: loading a judge there leaves no (empty) kernel cache dir behind."""
    from judge_core import Judge

    monkeypatch.setattr(wu, "_configured", None)
    monkeypatch.setenv("JUDGE_CORE_CACHE", str(tmp_path / "jc"))
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    for backend in ("packed", "hf"):
        Judge.from_pretrained(tiny_text_ckpt, backend=backend, device="cpu")
    assert not (tmp_path / "jc" / "triton").exists()
    assert wu._configured is None  # nothing configured, nothing set in the environment
    monkeypatch.setattr(wu, "_configured", None)
