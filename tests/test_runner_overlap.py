"""The overlapped runner (judge_core/runner.py): the same numbers as the sequential path, batch k+1
submitted before batch k is waited for, on_batch once per planned batch in order, OOM split at
submission and at result()."""

from __future__ import annotations

import pytest
import torch

from judge_core.plan import plan_batches
from judge_core.runner import IDLE, Batch, ReadyLogits, run_batches, stream_batches


class FakeBackend:
    """Logits = (length, first token) per sequence; records submit / result events; injects OOM."""

    name, device, dtype, max_context, counts_padding = "fake", torch.device("cpu"), torch.float32, 10**6, False

    def __init__(self, oom_at_submit_above=None, oom_at_result_above=None, async_=True):
        self.events: list[tuple[str, int]] = []
        self.submitted = 0
        self.oom_at_submit_above = oom_at_submit_above
        self.oom_at_result_above = oom_at_result_above
        if not async_:
            self.candidate_logits_async = None

    def _logits(self, batch):
        return torch.tensor([[float(len(s)), float(s[0])] for s in batch])

    def candidate_logits(self, batch):
        return self.candidate_logits_async(batch).result() if self.candidate_logits_async else self._logits(batch)

    def candidate_logits_async(self, batch):
        if self.oom_at_submit_above is not None and len(batch) > self.oom_at_submit_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (injected at submit)")
        k = self.submitted
        self.submitted += 1
        self.events.append(("submit", k))
        outer, logits, rows = self, self._logits(batch), len(batch)

        class Handle:
            def result(self):
                outer.events.append(("result", k))
                if outer.oom_at_result_above is not None and rows > outer.oom_at_result_above:
                    raise RuntimeError("CUDA out of memory (injected at result)")
                return logits

        return Handle()


def _workload(n=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(1, 1000, (int(torch.randint(1, 60, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]
    return seqs, plan_batches([len(s) for s in seqs], 120, counts_padding=False)


def test_submits_next_batch_before_waiting():
    seqs, batches = _workload()
    backend = FakeBackend()
    seen = []
    out, errors, stats = run_batches(backend, seqs, batches, lambda batch, logits, errs: seen.append(batch))
    assert len(batches) > 3 and not errors
    ev = backend.events
    for k in range(len(batches) - 1):  # batch k's result is collected only after batch k+1 was submitted
        assert ev.index(("submit", k + 1)) < ev.index(("result", k))
    assert seen == [list(b) for b in batches]  # on_batch per planned batch, in plan order
    expected = torch.tensor([[float(len(s)), float(s[0])] for s in seqs])
    assert torch.equal(out, expected) and stats["batches"] == len(batches) and stats["oom_splits"] == 0


@pytest.mark.parametrize("where", ["submit", "result"])
def test_oom_split_matches_sequential(where):
    seqs, batches = _workload(seed=1)
    ref, ref_err, _ = run_batches(FakeBackend(async_=False), seqs, batches, overlap=False)
    kw = {"oom_at_submit_above": 2} if where == "submit" else {"oom_at_result_above": 2}
    seen = []
    out, errors, stats = run_batches(FakeBackend(**kw), seqs, batches, lambda batch, logits, errs: seen.append(batch))
    print(f"OOM at {where}: {stats['oom_splits']} splits, {stats['batches']} pieces for {len(batches)} batches")
    assert stats["oom_splits"] > 0 and not errors and not ref_err
    assert torch.equal(out, ref)
    assert seen == [list(b) for b in batches]


def test_single_prompt_oom_is_an_error_for_it_alone():
    seqs = [[5] * 10, [6] * 20, [7] * 30]
    backend = FakeBackend(oom_at_submit_above=0)  # every piece fails, down to single prompts
    out, errors, stats = run_batches(backend, seqs, [[0, 1, 2]])
    assert sorted(errors) == [0, 1, 2] and "single prompt of 20 tokens" in errors[1]
    assert torch.isnan(out).all()


def test_overlap_flag_and_other_errors():
    seqs, batches = _workload(n=5)
    with pytest.raises(ValueError, match="candidate_logits_async"):
        run_batches(FakeBackend(async_=False), seqs, batches, overlap=True)

    class Broken(FakeBackend):
        def candidate_logits_async(self, batch):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        run_batches(Broken(), seqs, batches)
    assert ReadyLogits(torch.ones(2, 2)).result().sum() == 4


@pytest.mark.parametrize("name", ["packed", "hf"])
def test_real_backend_overlap_identical_to_sequential(tiny_text_ckpt, name):
    from transformers import AutoTokenizer

    from judge_core.backends import load_backend
    from judge_core.specs import load_spec
    from judge_core.specs.render import label_token_ids

    ids = label_token_ids(AutoTokenizer.from_pretrained(str(tiny_text_ckpt)), load_spec())
    backend = load_backend(name, str(tiny_text_ckpt), dtype=torch.float32, device=torch.device("cpu"),
                           label_ids=ids)
    assert callable(getattr(backend, "candidate_logits_async", None))
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(0, 248000, (int(n),), generator=g).tolist() for n in torch.randint(5, 200, (14,), generator=g)]
    batches = plan_batches([len(s) for s in seqs], 600, backend.counts_padding)
    seq_out, _, seq_stats = run_batches(backend, seqs, batches, overlap=False)
    ovl_out, _, ovl_stats = run_batches(backend, seqs, batches)
    err = (seq_out - ovl_out).abs().max().item()
    print(f"{name}: {len(batches)} batches, overlapped vs sequential max |d logits| = {err:.2e}")
    assert torch.equal(seq_out, ovl_out) and not torch.isnan(seq_out).any()
    assert seq_stats["computed_tokens"] == ovl_stats["computed_tokens"] and seq_stats["batches"] == ovl_stats["batches"]


def test_shared_prefixes_overlap_identical_to_sequential(tiny_text_ckpt):
    """With prefix sharing: the same logits overlapped and sequential, computed tokens counted once per prefix."""
    from judge_core.backends import load_backend
    from judge_core.prefix import PrefixPolicy, plan_shared_batches

    backend = load_backend("packed", str(tiny_text_ckpt), dtype=torch.float32, device=torch.device("cpu"),
                           label_ids=[32, 33])
    g = torch.Generator().manual_seed(5)
    prefix = torch.randint(0, 248000, (130,), generator=g).tolist()
    seqs = [prefix + torch.randint(0, 248000, (int(n),), generator=g).tolist() for n in torch.randint(1, 90, (9,), generator=g)]
    seqs += [torch.randint(0, 248000, (40,), generator=g).tolist()]
    policy = PrefixPolicy()
    batches = plan_shared_batches(seqs, 300, policy)
    seq_out, _, seq_stats = run_batches(backend, seqs, batches, overlap=False, prefixes=policy)
    ovl_out, _, ovl_stats = run_batches(backend, seqs, batches, prefixes=policy)
    plain, _, plain_stats = run_batches(backend, seqs, batches)
    err = (seq_out - plain).abs().max().item()
    print(f"{len(batches)} batches, {seq_stats['prompt_tokens']} prompt tokens -> {seq_stats['computed_tokens']} "
          f"computed; shared vs unshared max |d logits| = {err:.2e}")
    assert torch.equal(seq_out, ovl_out) and seq_stats == {**ovl_stats, "seconds": seq_stats["seconds"]}
    assert seq_stats["computed_tokens"] < seq_stats["prompt_tokens"] == plain_stats["computed_tokens"]
    assert err < 1e-4 and len(batches) > 1


def test_stream_idle_finishes_the_batch_in_flight_first():
    """A source with nothing ready yields IDLE: the batch in flight is collected and its result handed
    back before the source is asked again (the service answers without waiting for the next request)."""
    backend = FakeBackend()
    log = []

    def source():
        yield Batch([[1, 2, 3], [4, 5]], "first")
        log.append("idle")
        yield IDLE
        log.append(("asked again", list(backend.events)))
        yield Batch([[6]], "second")

    results = []
    for res in stream_batches(backend, source()):
        results.append(res.batch.tag)
        log.append(("result", res.batch.tag))
    assert results == ["first", "second"]
    first = log.index(("result", "first"))
    asked = next(i for i, e in enumerate(log) if isinstance(e, tuple) and e[0] == "asked again")
    assert log.index("idle") < first < asked  # the first result came back before the source was asked again
    assert log[asked][1] == [("submit", 0), ("result", 0)]  # and nothing was left in flight


def test_stream_keeps_order_across_splits_and_rejects_other_items():
    backend = FakeBackend(oom_at_submit_above=1)
    batches = [Batch([[k] * (k + 1)] * (k + 1), k) for k in range(4)]  # batch k: k+1 prompts, split to singles
    got = list(stream_batches(backend, iter(batches)))
    assert [r.batch.tag for r in got] == [0, 1, 2, 3]
    assert [r.oom_splits for r in got] == [0, 1, 2, 3] and [r.pieces for r in got] == [1, 2, 3, 4]
    assert all(torch.equal(r.logits, torch.tensor([[float(k + 1), float(k)]] * (k + 1))) for k, r in enumerate(got))
    with pytest.raises(TypeError, match="Batch items"):
        list(stream_batches(backend, iter([[[1, 2]]])))
