"""One scheduler, one worker thread, one model: token-budget batches filled from every open request.

Request handlers tokenize on their own threads and `submit` token id lists; the worker takes queued
prompts first-in first-out until the next one would overflow the token budget, padding counted
where the backend pads (so a request's
prompts may span batches, and one batch mixes many requests), plans that window as the offline path
does (`Judge.plan`: longest first, padding counted where the backend pads, shared prefixes computed
once on the packed backend) and runs it through `run_batches` (which halves a batch on out-of-memory). Packed prompts do not depend on their batch
mates, so a pair gets the same numbers here as in `Judge.compare_many`.

A cancelled job (client gone, timeout) leaves the queue at once: its prompts cost no model work.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Sequence

import torch

from ..prefix import forked_tokens
from ..runner import run_batches


class QueueFull(RuntimeError):
    """The queue cannot take the request now (full, still warming up, or shutting down): retry later."""


class Job:
    """One request's prompts: token ids in, a (logit A, logit B) pair or an error per prompt out."""

    def __init__(self, sequences: Sequence[Sequence[int]], on_done: Callable[["Job"], None] | None = None):
        self.sequences = list(sequences)
        self.logits: list[tuple[float, float] | None] = [None] * len(self.sequences)
        self.errors: dict[int, str] = {}
        self.remaining = len(self.sequences)  # prompts without a result yet
        self.queued = len(self.sequences)     # prompts still waiting in the scheduler's queue
        self.cancelled = False
        self.finished = threading.Event()
        self._on_done = on_done

    def _finish(self) -> None:
        self.finished.set()
        if self._on_done is not None:
            self._on_done(self)


class Scheduler:
    """judge: a `Judge` (its backend, token budget); or `load`, a callable returning one, run on the
    worker thread so that the server answers /health (503) while the model loads.

    max_queue_prompts bounds the prompts waiting across all requests (2 per pair).
    metrics: an object with `batch(real_tokens, computed_tokens, prompts, seconds, budget)` and
    `queue(prompts)`, or None.
    """

    def __init__(self, judge=None, *, load: Callable[[], object] | None = None, max_queue_prompts: int = 16384,
                 metrics=None, warmup: bool = True):
        if (judge is None) == (load is None):
            raise ValueError("give exactly one of judge (a Judge) or load (a callable returning one)")
        self.judge = judge
        self._load = load
        self.max_queue_prompts = max_queue_prompts
        self.metrics = metrics
        self._warmup = warmup
        self._queue: collections.deque[tuple[Job, int]] = collections.deque()
        self._queued_prompts = 0
        self._lock = threading.Condition()
        self._stopping = False
        self._started = False
        self.ready = threading.Event()
        self.failed: BaseException | None = None  # why the worker could not load or warm up
        self.on_failure: Callable[[], None] | None = None  # called (worker thread) when loading fails
        # A new thread may get another intra-op thread count than the one that built the scheduler
        # (OpenMP settings are per thread): the worker uses the builder's, as offline compare_many would.
        self._torch_threads = torch.get_num_threads()
        self._thread = threading.Thread(target=self._main, name="judge-scheduler", daemon=True)

    # -- request side ------------------------------------------------------------------------------
    def start(self) -> "Scheduler":
        """Start the worker (load, warm up, serve); a second call does nothing."""
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
        return self

    @property
    def queued_prompts(self) -> int:
        return self._queued_prompts

    def submit(self, sequences: Sequence[Sequence[int]], on_done: Callable[[Job], None] | None = None) -> Job:
        """Queue a request's prompts; raises QueueFull rather than waiting."""
        job = Job(sequences, on_done)
        if not job.sequences:
            job._finish()
            return job
        with self._lock:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if not self.ready.is_set():
                raise QueueFull("the model is still loading or warming up")
            if self._queued_prompts + len(job.sequences) > self.max_queue_prompts:
                raise QueueFull(f"queue full: {self._queued_prompts} prompts waiting, this request adds "
                                f"{len(job.sequences)}, the limit is {self.max_queue_prompts} prompts")
            self._queue.extend((job, k) for k in range(len(job.sequences)))
            self._queued_prompts += len(job.sequences)
            self._report_queue()
            self._lock.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Drop a job's queued prompts (those already in a running batch finish, unread)."""
        with self._lock:
            if job.cancelled:
                return
            job.cancelled = True
            self._queued_prompts -= job.queued  # its queue entries are skipped when reached
            job.queued = 0
            self._report_queue()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking requests, finish every queued prompt, then end the worker."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- worker side -------------------------------------------------------------------------------
    def _main(self) -> None:
        torch.set_num_threads(self._torch_threads)
        try:
            if self.judge is None:
                self.judge = self._load()
            if self._warmup:
                # One small batch: first-call costs (allocations, kernel selection) are paid before
                # /health says 200, not by the first client.
                self.judge.compare_many([("Warm up.", "A short answer.", "Another short answer.")])
        except BaseException as e:  # noqa: BLE001 - reported by /health and the CLI
            self.failed = e
            if self.on_failure is not None:
                self.on_failure()
            return
        self.ready.set()
        while True:
            window = self._next_window()
            if window is None:
                return
            if window:
                self._run(window)

    def _next_window(self) -> list[tuple[Job, int]] | None:
        """Queued prompts, oldest first, up to one token budget; None when stopped and drained."""
        budget = self.judge.token_budget
        with self._lock:
            while not self._queued_prompts and not self._stopping:
                self._lock.wait()
            window: list[tuple[Job, int]] = []
            total = longest = 0
            padded = self.judge.backend.counts_padding
            while self._queue:
                job, k = self._queue[0]
                if job.cancelled:
                    self._queue.popleft()
                    continue
                n = len(job.sequences[k])
                # The batch's cost as the backend counts it (rows x longest when it pads), so the
                # window is one planned batch and not a full one plus a scrap.
                cost = (len(window) + 1) * max(longest, n) if padded else total + n
                if window and cost > budget:
                    break
                self._queue.popleft()
                job.queued -= 1
                self._queued_prompts -= 1
                window.append((job, k))
                total += n
                longest = max(longest, n)
            self._report_queue()
            if not window and self._stopping:
                return None
            return window

    def _run(self, window: list[tuple[Job, int]]) -> None:
        backend = self.judge.backend
        sequences = [job.sequences[k] for job, k in window]
        lengths = [len(s) for s in sequences]
        # The judge's plan: with prefix sharing (packed), prompts sharing a prefix run together, computed once.
        batches, prefixes = self.judge.plan(sequences)
        last = time.perf_counter()

        def on_batch(batch: list[int], _logits, _errors) -> None:  # metrics only; results are read at the end
            nonlocal last
            now = time.perf_counter()
            if self.metrics is not None:
                real = sum(lengths[j] for j in batch)
                computed = len(batch) * max(lengths[j] for j in batch) if backend.counts_padding else real
                if prefixes is not None:
                    computed = forked_tokens([sequences[j] for j in batch], prefixes)
                self.metrics.batch(real, computed, len(batch), now - last, self.judge.token_budget)
            last = now

        try:
            logits, errors, _ = run_batches(backend, sequences, batches, on_batch, prefixes=prefixes)
            rows = logits.tolist()
        except Exception as e:  # noqa: BLE001 - a bug in one batch fails its prompts, not the server
            rows = None
            errors = {j: f"internal error while scoring: {type(e).__name__}: {e}" for j in range(len(window))}
        for j, (job, k) in enumerate(window):
            if j in errors:
                job.errors[k] = errors[j]
            else:
                job.logits[k] = (rows[j][0], rows[j][1])
            job.remaining -= 1
            if job.remaining == 0:
                job._finish()

    def _report_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue(self._queued_prompts)
