"""Batches -> backend -> candidate logits, with the host overlapping the GPU and out-of-memory split-and-retry.

One pipeline for every caller: `stream_batches` consumes an iterator of batches (each carrying its own
token ids and a caller's tag) and yields each batch's result in order. `Judge.compare_many` feeds it
every chunk's batches in one stream (a chunk boundary no longer drains the device), the scoring
service feeds it the windows it takes from its queue (`IDLE` when the queue is empty), and
`run_batches` is the array form over one list of sequences.

Overlap (MEASURED.md: the GPU waited on the host ~14% of a warm run): when the backend has
`candidate_logits_async(batch) -> handle`, batch k+1 is taken from the iterator (so whatever builds it,
planning, tokenizing, waiting for a request, runs now), copied and launched before the runner waits
for batch k's logits (`handle.result()`), so the GPU always has queued work while Python packs the
next batch. One batch is in flight at a time: its activations are freed on the host side as soon as
its kernels are queued (the caching allocator reuses them, stream-ordered, for the next batch), so
peak memory is one batch's, as in the sequential path. Backends without it run sequentially through
`candidate_logits`. Both paths give identical numbers (tests/test_runner_overlap.py).

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
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

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


@dataclass
class Batch:
    """Prompts to run together: their token ids, and the caller's tag (what the rows are; returned as is)."""

    sequences: list
    tag: Any = None


@dataclass
class BatchResult:
    """A batch's rows, all done: logits [len(batch.sequences), C] float32 (NaN rows for failed prompts; None
    when every prompt failed alone), errors by row, and what the model computed for it."""

    batch: Batch
    logits: torch.Tensor | None
    errors: dict[int, str]
    computed_tokens: int = 0
    pieces: int = 0        # forward passes that returned (1, or more after out-of-memory splits)
    oom_splits: int = 0


# Yielded by a batch source that has nothing to run now (the service's queue is empty): the runner then
# finishes the batch in flight and hands back its result before asking the source again, so no result
# waits on the next request.
IDLE = object()


class _Open:
    """A batch submitted whose pieces are not all back."""

    def __init__(self, batch: Batch):
        self.result = BatchResult(batch, None, {})
        self.pieces_left = 1

    def store(self, rows: list[int], logits: torch.Tensor) -> None:
        r = self.result
        if r.logits is None:
            r.logits = torch.full((len(r.batch.sequences), logits.shape[1]), float("nan"))
        r.logits[torch.as_tensor(rows)] = logits.float()
        r.pieces += 1


def _submitter(backend, overlap: bool | None, prefixes: PrefixPolicy | None):
    """batch -> handle with `result()`: the backend's async call, or its blocking one wrapped."""
    if prefixes is not None and not getattr(backend, "shares_prefixes", False):
        raise ValueError(f"prefix sharing needs a backend that shares prefixes; {backend.name!r} does not")
    submit = getattr(backend, "candidate_logits_async", None) if overlap is not False else None
    if overlap and submit is None:
        raise ValueError(f"overlap=True needs a backend with candidate_logits_async; {type(backend).__name__} has none")
    if submit is None:
        run = backend.candidate_logits
        if prefixes is None:
            return lambda batch: ReadyLogits(run(batch))
        return lambda batch: ReadyLogits(run(batch, prefixes=prefixes))
    if prefixes is not None:
        return lambda batch, run=submit: run(batch, prefixes=prefixes)
    return submit


def stream_batches(backend, batches: Iterable[Batch], *, overlap: bool | None = None,
                   prefixes: PrefixPolicy | None = None) -> Iterator[BatchResult]:
    """Run batches as the iterator gives them; yields each one's BatchResult, in the iterator's order.

    The next batch is taken from `batches` (and submitted) before the one in flight is waited for; a
    source with nothing ready yields `IDLE` instead, and the batch in flight is finished first.
    overlap: None = use `candidate_logits_async` when the backend has it; False = always sequential.
    prefixes: compute each shared prefix once inside a batch (a backend with `shares_prefixes`); a piece
    split off after an out-of-memory error shares what its own prompts share.
    """
    submit = _submitter(backend, overlap, prefixes)
    source = iter(batches)
    opened: deque[_Open] = deque()              # submitted batches, in order, until their result is yielded
    retry: deque[tuple[_Open, list[int]]] = deque()  # pieces split off after out-of-memory, run next
    flight = None  # (open batch, rows, handle): the one piece the device may still be running

    def cost(seqs: list) -> int:
        if prefixes is not None:
            return forked_tokens(seqs, prefixes)
        return batch_cost([len(s) for s in seqs], backend.counts_padding)

    def split(job: _Open, rows: list[int]) -> None:
        """An out-of-memory piece: retry its halves next, or record an error for a single prompt."""
        _release_memory(backend.device)
        if len(rows) == 1:
            tokens = len(job.result.batch.sequences[rows[0]])
            job.result.errors[rows[0]] = f"out of memory on a single prompt of {tokens} tokens"
            job.pieces_left -= 1
            return
        job.result.oom_splits += 1
        half = len(rows) // 2
        job.pieces_left += 1
        retry.appendleft((job, rows[half:]))
        retry.appendleft((job, rows[:half]))

    def collect(piece) -> None:
        job, rows, handle = piece
        try:
            logits = handle.result()
        except Exception as e:  # noqa: BLE001 - only OOM is handled; anything else is a bug and propagates
            if not is_oom(e):
                raise
            split(job, rows)
            return
        job.store(rows, logits)
        job.result.computed_tokens += cost([job.result.batch.sequences[r] for r in rows])
        job.pieces_left -= 1

    def finished() -> Iterator[BatchResult]:
        while opened and opened[0].pieces_left == 0:
            yield opened.popleft().result

    exhausted = False
    while True:
        if retry:
            job, rows = retry.popleft()
        else:
            item = IDLE if exhausted else next(source, None)
            if item is None:
                exhausted, item = True, IDLE
            if item is IDLE:
                if flight is None:
                    if exhausted:
                        return
                    continue
                collect(flight)
                flight = None
                yield from finished()
                continue
            if not isinstance(item, Batch):
                raise TypeError(f"stream_batches takes Batch items (or IDLE), got {type(item).__name__}")
            job = _Open(item)
            opened.append(job)
            rows = list(range(len(item.sequences)))
            if not rows:  # nothing to run: done at once (in order)
                job.pieces_left = 0
                yield from finished()
                continue
        try:
            handle = submit([job.result.batch.sequences[r] for r in rows])
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            if flight is not None:  # drain first: its memory comes back and its results are kept
                collect(flight)
                flight = None
            split(job, rows)
            yield from finished()
            continue
        if flight is not None:  # this piece is queued: now wait for the previous one
            collect(flight)
        flight = (job, rows, handle)
        yield from finished()


def run_batches(backend, sequences: Sequence[Sequence[int]], batches: Iterable[Sequence[int]],
                on_batch: Callable[[list[int], torch.Tensor, dict], None] | None = None, *,
                overlap: bool | None = None, prefixes: PrefixPolicy | None = None):
    """Run every planned batch of `sequences`; returns (logits [N, C] float32 with NaN rows for failures,
    errors dict, stats). The array form of `stream_batches`.

    batches: sequence indices per batch (any iterable, taken lazily). errors maps a sequence index to a
    message; `on_batch(indices, logits, errors)` is called once per planned batch, in plan order, when
    all its rows are done, with the logits and errors of every sequence so far (the rows of `indices`
    are final). The stats' computed_tokens count each shared prefix once when `prefixes` is given.
    """
    n = len(sequences)
    out: torch.Tensor | None = None
    errors: dict[int, str] = {}
    stats = {"batches": 0, "oom_splits": 0, "prompt_tokens": 0, "computed_tokens": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    source = (Batch([sequences[i] for i in idx], idx) for idx in (list(b) for b in batches))
    for res in stream_batches(backend, source, overlap=overlap, prefixes=prefixes):
        indices = res.batch.tag
        if out is None and res.logits is not None:
            out = torch.full((n, res.logits.shape[1]), float("nan"))
        if res.logits is not None:
            out[torch.as_tensor(indices)] = res.logits
        for row, message in res.errors.items():
            errors[indices[row]] = message
        stats["batches"] += res.pieces
        stats["oom_splits"] += res.oom_splits
        stats["prompt_tokens"] += sum(len(sequences[i]) for row, i in enumerate(indices) if row not in res.errors)
        stats["computed_tokens"] += res.computed_tokens
        if on_batch is not None:
            if out is None:  # every prompt so far failed alone: no logits yet
                out = torch.full((n, 2), float("nan"))
            on_batch(indices, out, errors)
    stats["seconds"] = time.perf_counter() - t0
    if out is None:
        out = torch.full((n, 2), float("nan"))
    return out, errors, stats
