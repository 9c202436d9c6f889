"""Pairs -> chunks (judge_core/chunks.py): the ramped boundaries, prefetching changes no number, the
next chunk really is tokenized while the model runs the current one, and a failure in the prefetch
thread reaches the caller."""

from __future__ import annotations

import threading

import pytest
import torch

from judge_core.api import Judge
import judge_core.chunks as chunks_module
from judge_core.chunks import CHUNK_PAIRS, FIRST_CHUNK_PAIRS, chunk_bounds, ramp_chunks
from pair_samples import random_pairs


def test_chunk_bounds_ramp_then_cap():
    assert chunk_bounds(0) == []
    assert chunk_bounds(1) == [(0, 1)]
    assert chunk_bounds(FIRST_CHUNK_PAIRS) == [(0, FIRST_CHUNK_PAIRS)]
    n = 3 * CHUNK_PAIRS + 5
    bounds = chunk_bounds(n)
    sizes = [e - s for s, e in bounds]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))          # contiguous, in order
    assert sizes[:3] == [FIRST_CHUNK_PAIRS, 2 * FIRST_CHUNK_PAIRS, 4 * FIRST_CHUNK_PAIRS]
    assert max(sizes) == CHUNK_PAIRS and sizes[-1] == n - sum(sizes[:-1])


class _FakeBackend:
    """Instant logits from the tokens; the first forward waits (up to 20 s) for `release`."""

    name, device, dtype, max_context, counts_padding = "fake", torch.device("cpu"), torch.float32, 1 << 20, False

    def __init__(self, release: threading.Event):
        self.release, self.calls, self.saw_overlap = release, 0, None

    def candidate_logits(self, batch):
        self.calls += 1
        if self.calls == 1:
            self.saw_overlap = self.release.wait(timeout=20)
        return torch.tensor([[float(len(s) % 7), float(sum(s) % 5)] for s in batch])


def _judge(qwen_tokenizer, backend) -> Judge:
    return Judge(backend, qwen_tokenizer, token_budget=4096)


def test_next_chunk_is_tokenized_while_the_model_runs(qwen_tokenizer, monkeypatch):
    second_chunk_started = threading.Event()
    backend = _FakeBackend(second_chunk_started)
    judge = _judge(qwen_tokenizer, backend)
    judge.prefetch = True
    calls = []
    tokenize = judge.prompt_tokens

    def watched(texts, user_texts):
        calls.append(len(texts))
        if len(calls) == 2:
            second_chunk_started.set()
        return tokenize(texts, user_texts)

    monkeypatch.setattr(judge, "prompt_tokens", watched)
    pairs = random_pairs(FIRST_CHUNK_PAIRS + 10, seed=5, max_words=8)
    scores = judge.compare_many(pairs)
    assert calls == [2 * FIRST_CHUNK_PAIRS, 20]
    assert backend.saw_overlap is True, "chunk 2 was not tokenized while chunk 1's first batch ran"
    assert all(s.ok for s in scores) and len(scores) == len(pairs)


def test_prefetch_changes_no_number(tiny_text_ckpt):
    judge = Judge.from_pretrained(tiny_text_ckpt, device="cpu", backend="packed", token_budget=2048)
    pairs = random_pairs(FIRST_CHUNK_PAIRS + 40, seed=9, max_words=12)
    judge.prefetch = False
    sequential = judge.compare_many(pairs)
    judge.prefetch = True
    ahead = judge.compare_many(pairs)
    worst = max(abs(a.p1 - b.p1) for a, b in zip(sequential, ahead))
    print(f"prefetched vs sequential chunks, {len(pairs)} pairs in 2 chunks: max |dp1| = {worst:.1e} pp")
    assert [s.p1 for s in ahead] == [s.p1 for s in sequential]
    assert [s.tokens for s in ahead] == [s.tokens for s in sequential]


def test_a_failure_in_the_prefetch_thread_reaches_the_caller(qwen_tokenizer, monkeypatch):
    judge = _judge(qwen_tokenizer, _FakeBackend(threading.Event()))
    judge.prefetch = True
    tokenize, calls = judge.prompt_tokens, []

    def broken_second(texts, user_texts):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("tokenizer died")
        return tokenize(texts, user_texts)

    monkeypatch.setattr(judge, "prompt_tokens", broken_second)
    monkeypatch.setattr(judge.backend, "release", threading.Event())
    judge.backend.release.set()
    with pytest.raises(RuntimeError, match="tokenizer died"):
        judge.compare_many(random_pairs(FIRST_CHUNK_PAIRS + 1, seed=1, max_words=4))


def test_prefetch_defaults_to_cuda_only(qwen_tokenizer):
    judge = _judge(qwen_tokenizer, _FakeBackend(threading.Event()))
    assert judge.prefetch is None and judge._prefetching() is False
    judge.backend.device = torch.device("cuda")   # the instance attribute only: nothing runs here
    assert judge._prefetching() is True


def test_ramp_chunks_read_the_input_lazily():
    pulled = []

    def items(n):
        for i in range(n):
            pulled.append(i)
            yield i

    n = 3 * FIRST_CHUNK_PAIRS + 7
    chunks = ramp_chunks(items(n))
    first = next(chunks)
    assert first == list(range(FIRST_CHUNK_PAIRS)) and len(pulled) == FIRST_CHUNK_PAIRS  # nothing read ahead
    rest = list(chunks)
    assert [(c[0], c[0] + len(c)) for c in [first, *rest]] == chunk_bounds(n)  # the same boundaries


class _AsyncRecorder:
    """Instant logits from the tokens, submitted and collected as the overlapped runner does; logs both."""

    name, device, dtype, max_context, counts_padding = "fake", torch.device("cpu"), torch.float32, 1 << 20, False

    def __init__(self):
        self.events: list[tuple[str, int]] = []

    def candidate_logits(self, batch):
        return torch.tensor([[float(len(s) % 7), float(sum(s) % 5)] for s in batch])

    def candidate_logits_async(self, batch):
        k = sum(e[0] == "submit" for e in self.events)
        self.events.append(("submit", k))
        logits, events = self.candidate_logits(batch), self.events

        class Handle:
            def result(self):
                events.append(("result", k))
                return logits

        return Handle()


def test_the_device_runs_across_a_chunk_boundary(qwen_tokenizer, monkeypatch):
    """Every chunk's batches go through one pipeline: the first batch of chunk 2 is launched before the
    last batch of chunk 1 is waited for; judge_stream takes its items lazily and reports each once."""
    monkeypatch.setattr(chunks_module, "FIRST_CHUNK_PAIRS", 3)
    backend = _AsyncRecorder()
    judge = Judge(backend, qwen_tokenizer, token_budget=1)  # one prompt per batch: 2 batches per pair
    pairs = random_pairs(7, seed=2, max_words=6)  # chunks of 3 and 4 pairs
    scores = judge.compare_many(pairs)
    ev = backend.events
    last_of_chunk1, first_of_chunk2 = 2 * 3 - 1, 2 * 3
    assert ev.index(("submit", first_of_chunk2)) < ev.index(("result", last_of_chunk1))
    assert judge.last_run_stats["batches"] == 14 and judge.last_run_stats["pairs"] == 7

    pulled, got, read_when = [], {}, []

    def items():
        for pair in pairs:
            pulled.append(pair)
            yield pair

    def on_result(i, score):
        assert i not in got
        got[i] = score
        read_when.append(len(pulled))

    stats = judge.judge_stream(items(), on_result)
    assert sorted(got) == list(range(7)) and stats["pairs"] == 7
    assert [got[i].p1 for i in range(7)] == [s.p1 for s in scores]
    assert read_when[0] == 3  # the first verdict came while only chunk 1 had been read
