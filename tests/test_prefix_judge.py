"""The whole Judge with shared prefixes (packed backend, tiny Qwen3.5, fp32): shared vs unshared vs the
reference twin on workloads that share prefixes the way judge workloads do (both passes of a pair, an RL
anchor in slot A, round-robin), and the cases at the edges: a group split over two batches, an
out-of-memory split inside a group, identical prompts, batch mates; the hf backend stays unshared."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from judge_core import Judge
from judge_core.prefix import PrefixPolicy, forked_tokens
from judge_core.runner import run_batches
from pair_samples import random_pairs
from parity import TOLERANCES, max_dp1

TOL_PP = TOLERANCES["fp32"]


def _workload():
    """An anchor group (one reference in slot A against 6 samples), a round-robin of 4, loose pairs."""
    instruction = "Write a short story about a lighthouse keeper who finds a message in a bottle. " * 3
    reference = "The keeper climbed the stairs at dusk, as he had for forty years, and lit the lamp. " * 4
    samples = [f"Sample {k}: " + "the sea was grey and the bottle was green. " * (2 + k) for k in range(6)]
    anchor = [(instruction, reference, s) for s in samples]
    robin = [(instruction, samples[i], samples[j]) for i in range(4) for j in range(4) if i != j]
    return anchor + robin + random_pairs(6, seed=5)


@pytest.fixture(scope="module")
def judges(tiny_text_ckpt):
    shared = Judge.from_pretrained(tiny_text_ckpt, backend="packed")
    unshared = Judge(shared.backend, shared.tokenizer, share_prefixes=False)
    return shared, unshared


@pytest.fixture(scope="module")
def twin_scores(tiny_text_ckpt, reference_scores):
    return reference_scores(tiny_text_ckpt, _workload())


@pytest.mark.parametrize("budget", [32768, 1500])
def test_shared_matches_unshared_and_reference(judges, twin_scores, budget):
    shared, unshared = judges
    shared.token_budget = unshared.token_budget = budget
    pairs = _workload()
    got = shared.compare_many(pairs)
    stats = shared.last_run_stats
    plain = unshared.compare_many(pairs)
    plain_stats = unshared.last_run_stats
    d_plain, d_ref = max_dp1(got, plain), max_dp1(got, twin_scores)
    print(f"\n[budget {budget}] shared: {stats['prompt_tokens']} prompt tokens, {stats['computed_tokens']} computed "
          f"({1 - stats['computed_tokens'] / stats['prompt_tokens']:.1%} saved), {stats['batches']} batches; "
          f"max |d p1| vs unshared {d_plain:.3g} pp, vs reference twin {d_ref:.3g} pp, "
          f"unshared vs reference {max_dp1(plain, twin_scores):.3g} pp")
    assert all(s.ok for s in got) and [s.tokens for s in got] == [s.tokens for s in twin_scores]
    assert d_plain <= TOL_PP and d_ref <= TOL_PP
    assert stats["shared_prefixes"] and not plain_stats["shared_prefixes"]
    assert stats["prompt_tokens"] == plain_stats["prompt_tokens"] == plain_stats["computed_tokens"]
    assert stats["computed_tokens"] < 0.8 * stats["prompt_tokens"]
    assert max(abs(s.pass1[0] - 50) for s in twin_scores) > 1.0   # the random judge has opinions


class SpyPacked:
    """Wraps the packed backend: records each batch (and its computed rows), can fail like a GPU OOM."""

    def __init__(self, inner, oom_above_rows=None):
        self.inner, self.oom_above_rows, self.batches = inner, oom_above_rows, []
        for name in ("name", "device", "dtype", "max_context", "counts_padding", "shares_prefixes"):
            setattr(self, name, getattr(inner, name))

    def candidate_logits(self, batch, prefixes=None):
        if self.oom_above_rows is not None and len(batch) > self.oom_above_rows:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        self.batches.append(([list(s) for s in batch], forked_tokens(batch, prefixes) if prefixes else None))
        return self.inner.candidate_logits(batch, prefixes=prefixes)


def test_group_split_over_two_batches_and_oom_inside_a_group(judges):
    shared, unshared = judges
    instruction = "Compare these two poems about autumn leaves and the end of a long summer holiday. " * 2
    anchor = "Leaves fall, gold and red, over the quiet road; the summer is gone and the school bell rings. " * 3
    pairs = [(instruction, anchor, f"poem {k}: " + "wind and rain " * (3 + k)) for k in range(8)]
    want = unshared.compare_many(pairs)
    prefix = shared.tokenize([shared.prompt(instruction, anchor, "x")])[0][:150]

    spy = SpyPacked(shared.backend)
    judge = Judge(spy, shared.tokenizer, token_budget=600)      # the anchor group (8 pass-1 prompts) > 600
    got = judge.compare_many(pairs)
    with_anchor = [b for b, _ in spy.batches if any(s[:150] == list(prefix) for s in b)]
    print(f"\ngroup over {len(with_anchor)} batches, computed rows per batch {[c for _, c in spy.batches]}, "
          f"max |d p1| vs unshared {max_dp1(got, want):.3g} pp")
    assert len(with_anchor) >= 2 and all(c <= 600 for _, c in spy.batches)
    assert max_dp1(got, want) <= TOL_PP

    oom = SpyPacked(shared.backend, oom_above_rows=3)
    judge = Judge(oom, shared.tokenizer)
    got = judge.compare_many(pairs)
    print(f"OOM inside a group: {judge.last_run_stats['oom_splits']} splits, max |d p1| = {max_dp1(got, want):.3g} pp")
    assert judge.last_run_stats["oom_splits"] > 0 and all(len(b) <= 3 for b, _ in oom.batches)
    assert max_dp1(got, want) <= TOL_PP and all(s.ok for s in got)


def test_identical_prompts_and_batch_mates(judges):
    shared, unshared = judges
    same = ("Rate these.", "An identical response, word for word. " * 5, "An identical response, word for word. " * 5)
    pair = ("Write about the sea.", "Waves fold over the rocks at night. " * 4, "The sea. " * 6)
    alone = shared.compare_many([pair])[0]
    crowd = shared.compare_many([same, pair, same, (pair[0], pair[1], "other " * 9), pair])
    plain = unshared.compare_many([same, pair])
    print(f"\nidentical passes: p1 {crowd[0].p1:.6f}; pair alone vs among batch mates |d p1| = "
          f"{abs(alone.p1 - crowd[1].p1):.3g} pp")
    # identical prompts; copies may run through different GDN forms (the CPU's blocked one for an unforked
    # batch, the chunked one for forked levels), equal to float32 rounding rather than bit for bit
    assert abs(crowd[0].p1 - 50.0) < 1e-9 and abs(crowd[0].pass1[0] - crowd[2].pass1[0]) <= 1e-5
    assert abs(crowd[0].pass1[0] - plain[0].pass1[0]) <= TOL_PP
    assert abs(crowd[1].pass1[0] - crowd[4].pass1[0]) <= 1e-5                         # a duplicate pair
    assert abs(alone.p1 - crowd[1].p1) <= TOL_PP and abs(plain[1].p1 - crowd[1].p1) <= TOL_PP


@pytest.fixture(scope="module")
def packed(judges):
    return judges[0].backend


@pytest.mark.parametrize("case", ["nothing", "one token", "all but one", "prefix of another"])
def test_backend_forks_at_the_edges(packed, case):
    gen = torch.Generator().manual_seed(11)
    r = lambda n: torch.randint(0, 248_000, (n,), generator=gen).tolist()  # noqa: E731
    base = r(150)
    prompts = {"nothing": [r(80), r(90), r(5)],
               "one token": [base[:1] + r(70), base[:1] + r(40), base[:1]],
               "all but one": [base, base[:-1] + r(1), base[:-1] + r(1)],
               "prefix of another": [base, base[:129], base[:64] + r(3)]}[case]
    want = packed.candidate_logits(prompts)
    for policy in (PrefixPolicy(), PrefixPolicy(1, 1)):
        got = packed.candidate_logits(prompts, prefixes=policy)
        err = (got - want).abs().max().item()
        print(f"{case}, {policy}: {sum(map(len, prompts))} tokens -> {forked_tokens(prompts, policy)} computed, "
              f"max |d logit| vs unshared {err:.3g}")
        assert err < 1e-4


def test_hf_backend_stays_unshared(tiny_qwen3_ckpt):
    judge = Judge.from_pretrained(tiny_qwen3_ckpt, backend="hf")
    assert judge.share_prefixes and judge.prefix_sharing() is None and judge.backend.shares_prefixes is False
    pairs = [("Same instruction " * 30, "response one " * 20, "response two " * 20)] * 3
    judge.compare_many(pairs)
    stats = judge.last_run_stats
    assert not stats["shared_prefixes"] and stats["computed_tokens"] >= stats["prompt_tokens"]
    with pytest.raises(ValueError, match="does not"):
        run_batches(judge.backend, [[1, 2]], [[0]], prefixes=PrefixPolicy())


def test_cli_flag_turns_sharing_off(tiny_text_ckpt):
    from judge_core.cli.model_arg import add_judge_arguments, judge_from_args

    parser = argparse.ArgumentParser()
    add_judge_arguments(parser)
    assert parser.parse_args([str(tiny_text_ckpt)]).no_share_prefixes is False
    off = judge_from_args(parser.parse_args([str(tiny_text_ckpt), "--backend", "packed", "--no-share-prefixes"]),
                          warmup=False)
    assert off.prefix_sharing() is None and not off.share_prefixes and off.backend.shares_prefixes


def test_token_ids_are_int32_arrays(judges):
    """Token ids travel as int32 arrays (4 bytes a token) from the tokenizer to the batch builder."""
    shared, _ = judges
    texts = ["A short text.", shared.prompt("i", "a", "b")]
    ids = shared.tokenize(texts)
    want = shared.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert all(isinstance(t, np.ndarray) and t.dtype == np.int32 for t in ids)
    assert [t.tolist() for t in ids] == want
