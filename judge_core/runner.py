"""Batches -> backend -> candidate logits, with the host overlapping the GPU and out-of-memory split-and-retry.

Overlap (MEASURED.md: the GPU waited on the host ~14% of a warm run): when the backend has
`candidate_logits_async(batch) -> handle`, batch k+1 is built, copied and launched before the runner
waits for batch k's two logits per prompt (`handle.result()`), so the GPU always has queued work
while Python packs the next batch. One batch is in flight at a time: its activations are freed on
the host side as soon as its kernels are queued (the caching allocator reuses them, stream-ordered,
for the next batch), so peak memory is one batch's, as in the sequential path. Backends without it
run sequentially through `candidate_logits`. Both paths give identical numbers (tests/test_runner_overlap.py).

Out of memory: the planner sizes batches from a token budget, which is a guess about memory. When a
batch still runs out of memory, it is halved and each half retried, down to single prompts; a single
prompt that does not fit becomes an error for its pair alone. Where errors surface with overlap:
an allocation failure is raised by the caching allocator on the host, i.e. by the submitting call,
so it is caught at submission; the batch in flight is then drained first (its memory comes back)
and the failed batch is split. Errors raised later by the device (illegal access, a kernel fault) are
asynchronous: they surface at `handle.result()` of that batch or a later one and propagate, never
retried. An out-of-memory error raised by `result()` (a backend that computes lazily) is split too.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Sequence

import torch

from .backends.base import PendingLogits, ReadyLogits, device_scope  # noqa: F401 - the handles live with the contract
from .plan import batch_cost
from .prefix import PrefixPolicy, forked_tokens


def is_oom(error: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_batches(backend, sequences: Sequence[Sequence[int]], batches: Sequence[Sequence[int]],
                on_batch: Callable[[list[int], torch.Tensor, dict], None] | None = None, *,
                overlap: bool | None = None, prefixes: PrefixPolicy | None = None):
    """Run every planned batch; returns (logits [N, C] float32 with NaN rows for failures, errors dict, stats).

    errors maps a sequence index to a message; `on_batch(indices, logits, errors)` is called once per
    planned batch, in plan order, when all its rows are done, with the logits and errors of every
    sequence so far (the rows of `indices` are final). overlap: None = use `candidate_logits_async` when the
    backend has it; False = always sequential (the reference for the overlapped path).
    prefixes: compute each shared prefix once inside a batch (a backend with `shares_prefixes`); the
    stats' computed_tokens then count each prefix once. A piece split off after an out-of-memory error
    shares what its own prompts share.
    """
    if prefixes is not None and not getattr(backend, "shares_prefixes", False):
        raise ValueError(f"prefix sharing needs a backend that shares prefixes; {backend.name!r} does not")
    submit = getattr(backend, "candidate_logits_async", None) if overlap is not False else None
    if overlap and submit is None:
        raise ValueError(f"overlap=True needs a backend with candidate_logits_async; {type(backend).__name__} has none")
    if submit is None:
        submit = backend.candidate_logits
        if prefixes is None:
            submit = lambda batch, run=submit: ReadyLogits(run(batch))  # noqa: E731
        else:
            submit = lambda batch, run=submit: ReadyLogits(run(batch, prefixes=prefixes))  # noqa: E731
    elif prefixes is not None:
        submit = lambda batch, run=submit: run(batch, prefixes=prefixes)  # noqa: E731

    n = len(sequences)
    out: torch.Tensor | None = None
    errors: dict[int, str] = {}
    stats = {"batches": 0, "oom_splits": 0, "prompt_tokens": 0, "computed_tokens": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    planned = [list(b) for b in batches]
    pieces_left = [1] * len(planned)      # unfinished pieces of each planned batch (splits add pieces)
    work: deque[tuple[int, list[int]]] = deque(enumerate(planned))
    reported = 0

    def store(indices: list[int], logits: torch.Tensor) -> None:
        nonlocal out
        if out is None:
            out = torch.full((n, logits.shape[1]), float("nan"))
        out[torch.as_tensor(indices)] = logits.float()
        stats["batches"] += 1
        stats["prompt_tokens"] += sum(len(sequences[i]) for i in indices)
        if prefixes is not None:
            stats["computed_tokens"] += forked_tokens([sequences[i] for i in indices], prefixes)
        else:
            stats["computed_tokens"] += batch_cost([len(sequences[i]) for i in indices], backend.counts_padding)

    def split(b: int, indices: list[int]) -> None:
        """An out-of-memory piece: retry its halves next, or record an error for a single prompt."""
        _release_memory(backend.device)
        if len(indices) == 1:
            errors[indices[0]] = f"out of memory on a single prompt of {len(sequences[indices[0]])} tokens"
            pieces_left[b] -= 1
            return
        stats["oom_splits"] += 1
        half = len(indices) // 2
        pieces_left[b] += 1
        work.appendleft((b, indices[half:]))
        work.appendleft((b, indices[:half]))

    def collect(flight: tuple[int, list[int], object]) -> None:
        b, indices, handle = flight
        try:
            logits = handle.result()
        except Exception as e:  # noqa: BLE001 - only OOM is handled; anything else is a bug and propagates
            if not is_oom(e):
                raise
            split(b, indices)
            return
        store(indices, logits)
        pieces_left[b] -= 1

    def report() -> None:
        nonlocal reported, out
        while reported < len(planned) and pieces_left[reported] == 0:
            if on_batch is not None:
                if out is None:  # every prompt so far failed alone: no logits yet
                    out = torch.full((n, 2), float("nan"))
                on_batch(list(planned[reported]), out, errors)
            reported += 1

    flight = None  # (planned index, indices, handle): the one batch the device may still be running
    while work or flight is not None:
        if not work:
            collect(flight)
            flight = None
            report()
            continue
        b, indices = work.popleft()
        try:
            handle = submit([sequences[i] for i in indices])
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            if flight is not None:  # drain first: its memory comes back and its results are kept
                collect(flight)
                flight = None
            split(b, indices)
            report()
            continue
        if flight is not None:  # batch k+1 is queued: now wait for batch k
            collect(flight)
        flight = (b, indices, handle)
        report()

    stats["seconds"] = time.perf_counter() - t0
    if out is None:
        out = torch.full((n, 2), float("nan"))
    return out, errors, stats
