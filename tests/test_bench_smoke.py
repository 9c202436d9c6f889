"""CI-sized bench: the tiny judge, a few short synthetic pairs, every CPU system, both sweeps.

Checks that the suite runs end to end, that every system appears in the JSON and the Markdown with
a status, that the numbers are sane, and that judge_core and the plain baseline agree with the
reference twin (the bench's own parity figure).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench.cost import CostModel
from bench.metrics import card_metrics, cutoff_effect, verdict
from bench.report import write_all
from bench.suite import BenchConfig, run_bench
from bench.workloads import BenchPair, card_filter, card_pairs, synthetic_pairs
from judge_core.scoring import combine_passes

# Whole processes, servers, clusters or bench runs: CI runs them (-m slow); README's fast set does not.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_results(tiny_text_ckpt, tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    # GPTQ is left out here: quantizing takes longer than the rest of the smoke run (it is covered by
    # the GPTQ tests and appears in the full CPU bench); its skip path is the same as vLLM's.
    cfg = BenchConfig(model=str(tiny_text_ckpt), device="cpu", n_pairs=3, max_chars=120, dtypes=("fp32",),
                      systems=("judge_core", "plain", "reference", "vllm"), backends=("hf", "packed"),
                      sweep_budgets=(1024, 4096), sweep_lengths=(16, 48), sweep_pairs=2, sweep_systems=("judge_core",),
                      progress=False, work_dir=str(work), command="pytest smoke",
                      threads=1)  # one thread: small ops on a busy 2-core runner stall with two
    threads_before = torch.get_num_threads()
    results = run_bench(cfg)
    assert torch.get_num_threads() == threads_before  # the bench leaves the session's setting alone
    paths = write_all(results, work / "out")
    return results, paths


def test_bench_smoke_reports_every_system(smoke_results):
    results, paths = smoke_results
    rows = {r["name"]: r for r in results["systems"]}
    for name in ("judge_core hf fp32", "judge_core packed fp32", "plain HF batched fp32", "reference twin fp32",
                 "reference twin fp32, card top-10 cutoff", "vLLM card code bf16"):
        assert name in rows, f"{name} missing from {sorted(rows)}"
    for name in ("judge_core hf fp32", "plain HF batched fp32", "reference twin fp32"):
        assert rows[name]["status"] == "ok", rows[name]
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert rows["vLLM card code bf16"]["status"] == "skipped"
        assert "vllm" in rows["vLLM card code bf16"]["reason"]

    for r in results["systems"]:
        if r["status"] != "ok":
            assert r["reason"], r
            continue
        sp = r["speed"]
        assert r["pairs"] == 3
        assert sp["prompt_tokens_per_s"] > 0 and math.isfinite(sp["prompt_tokens_per_s"])
        assert 0 < sp["padding_efficiency"] <= 1.0
        assert 0 < sp["mfu"] < 1.0, sp
        assert r["memory"]["peak_rss_bytes"] > 0
        card = r["card"]
        assert card["labelled_pairs"] == 3
        for key in ("strict_accuracy", "positional_consistency"):
            assert 0.0 <= card[key] <= 1.0
        assert card["mean_target_mass"] + card["mean_non_target_mass"] == pytest.approx(100.0)

    for name in ("judge_core hf fp32", "plain HF batched fp32"):
        acc = rows[name]["vs_reference"]
        print(f"{name} vs reference twin (fp32, bench smoke): max |delta p1| = {acc['max_abs_delta_p1']:.3g}")
        assert acc["pairs_compared"] == 3
        assert acc["max_abs_delta_p1"] < 1e-2
        assert acc["verdict_agreement"] == 1.0

    md = open(paths["markdown"]).read()
    for name in rows:
        assert name in md
    on_disk = json.loads(open(paths["json"]).read())
    assert [r["name"] for r in on_disk["systems"]] == [r["name"] for r in results["systems"]]
    assert results["workload"]["prompt_tokens_median"] > 0
    assert results["cutoff"]["pairs_compared"] == 3
    assert results["meta"]["machine"]["torch_threads"] == 1


def test_bench_smoke_sweeps(smoke_results):
    results, paths = smoke_results
    budget = [p for p in results["sweeps"]["token_budget"] if p["status"] == "ok"]
    assert [p["token_budget"] for p in budget] == [1024, 4096]
    # a bigger budget never needs more batches on the same prompts
    assert budget[0]["batches"] >= budget[1]["batches"]
    length = [p for p in results["sweeps"]["prompt_length"] if p["status"] == "ok"]
    systems = {p["system"] for p in length}
    assert "judge_core hf fp32" in systems
    for s in systems:
        pts = sorted((p for p in length if p["system"] == s), key=lambda p: p["response_tokens"])
        assert pts[0]["mean_prompt_tokens"] < pts[-1]["mean_prompt_tokens"]
    if paths["plots"]:
        for p in paths["plots"]:
            assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_card_filter_and_pairs():
    def item(model, score, text, pid="1"):
        return {"model": model, "prompt_id": pid, "prompt": "Write.", "response": text, "item_score": score}

    base = "x" * 100
    assert card_filter(item("m1", 70, base), item("m2", 77, "y" * 115))
    assert not card_filter(item("m1", 70, base), item("m1", 77, base))          # same writer
    assert not card_filter(item("m1", 70, base), item("m2", 77, "y" * 121))     # ratio > 1.2
    assert not card_filter(item("m1", 70, base), item("m2", 74, base))          # diff < 5
    assert not card_filter(item("m1", 70, base), item("m2", 80.5, base))        # diff > 10
    assert not card_filter(item("m1", 70, base), item("m2", 77, None))          # missing response
    items = [item(f"m{i}", 60 + 6 * (i % 2), "z" * (100 + i), pid=str(i % 3)) for i in range(30)]
    a = card_pairs(items, 10, seed=42)
    b = card_pairs(items, 10, seed=42)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert all(p.label in (1, 2) for p in a)
    with pytest.raises(ValueError, match="pass the card's filter"):
        card_pairs(items, 10_000)


def test_synthetic_lengths_follow_dev_data(qwen_tokenizer):
    pairs = synthetic_pairs(40, tokenizer=qwen_tokenizer)
    lengths = sorted(len(qwen_tokenizer.encode(p.response_1)) for p in pairs)
    median = lengths[len(lengths) // 2]
    print(f"synthetic response tokens: median {median}, max {lengths[-1]} (target median 1400)")
    assert 1000 <= median <= 1900
    for p in pairs:
        n1, n2 = len(p.response_1), len(p.response_2)
        assert max(n1, n2) / min(n1, n2) < 1.5  # about the card's 1.2 token ratio
        assert 5 <= abs(p.score_1 - p.score_2) <= 10


def test_card_metrics_by_hand():
    pairs = [BenchPair("i", "a", "b", 80, 70), BenchPair("i", "a", "b", 60, 70)]
    # pair 0: both passes prefer response 1 (label 1); pair 1: pass 1 prefers response 1, pass 2 too (label 2)
    s0 = combine_passes((2.0, 0.0), (0.0, 2.0))
    s1 = combine_passes((1.0, 0.0), (0.0, 3.0))
    m = card_metrics([s0, s1], pairs)
    assert m["strict_accuracy"] == 0.5
    assert m["positional_consistency"] == 1.0
    assert m["mean_target_mass"] == pytest.approx((s0.p1 + s1.p2) / 2)
    cut = cutoff_effect([s0, s1], [combine_passes((-100.0, -100.0), (0.0, 2.0)), s1])
    assert cut["passes_with_a_candidate_missing"] == 0.25
    assert cut["pass_verdict_changed"] == 0.25 and cut["pair_verdict_changed"] == 0.0
    assert verdict(50.0) == 0


def test_cost_model_matches_design_for_4b():
    from judge_core.embedded import qwen3_5_text_config

    cost = CostModel.from_config(qwen3_5_text_config("4b"))
    per_token = cost.prompt_flops(4096) / 4096
    print(f"4B cost model: {2e-9 * cost.matmul_params:.3f} GFLOP/token dense, {per_token / 1e9:.3f} at 4k context")
    assert 2 * cost.matmul_params / 1e9 == pytest.approx(7.14, abs=0.01)   # DESIGN §5
    assert cost.n_full_layers * 2 * cost.n_heads * cost.head_dim == 65536  # ~65.5k x L per token
    assert 790e12 / per_token == pytest.approx(105e3, rel=0.02)           # the ~105k tokens/s ceiling
