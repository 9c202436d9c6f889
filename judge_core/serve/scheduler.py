"""One scheduler, one worker thread, one model: token-budget batches filled from every open request.

Request handlers tokenize on their own threads and `submit` token id lists; the worker takes queued
prompts first-in first-out until the next one would overflow the token budget, padding counted
where the backend pads (so a request's prompts may span batches, and one batch mixes many requests),
plans that window as the offline path does (`Judge.plan`: longest first, padding counted where the
backend pads, shared prefixes computed once on the packed backend) and hands its batches to the one
pipeline offline runs use (`runner.stream_batches`, which halves a batch on out-of-memory). So the
service gets the offline overlap: the next window is taken and planned, and its first batch launched,
while the device still runs the last one; when the queue is empty the worker says so (`IDLE`) and the
batch in flight is finished and answered before the worker waits for requests. Packed prompts do not
depend on their batch mates, so a pair gets the same numbers here as in `Judge.compare_many`.

A cancelled job (client gone, timeout) leaves the queue at once: its prompts cost no model work.

Admission comes before any work: `admit` reserves a request's place in the queue (its prompt count is
known once the body is validated) and refuses at once when the queue is full or when the work ahead
of it cannot finish before the client's deadline (estimated from the tokens ahead and the measured
tokens per second); the request tokenizes only once admitted, and `submit` turns the reservation
into queued prompts (checking the deadline again with the request's own tokens).
`abort` (the second Ctrl-C) fails every open job at once so that its request is answered 503.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Sequence

import torch

from ..runner import IDLE, Batch, BatchResult, stream_batches


class QueueFull(RuntimeError):
    """The queue cannot take the request now (full, still warming up, shutting down, or too much work
    ahead for the request's deadline): retry later, after `retry_after` seconds when known."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Ticket:
    """A request's reserved place in the queue, from `admit` until `submit` or `release`."""

    def __init__(self, prompts: int):
        self.prompts = prompts
        self.open = True


ABORT_GRACE_S = 2.0  # after abort: how long stop() still waits for the worker's running batch
RATE_BATCHES = 32  # tokens per second is measured over the last 32 batches of model work


class Job:
    """One request's prompts: token ids in, the label logits (one per spec label) or an error per prompt out."""

    def __init__(self, sequences: Sequence[Sequence[int]], on_done: Callable[["Job"], None] | None = None):
        self.sequences = list(sequences)
        self.logits: list[tuple[float, ...] | None] = [None] * len(self.sequences)
        self.errors: dict[int, str] = {}
        self.remaining = len(self.sequences)  # prompts without a result yet
        self.queued = len(self.sequences)     # prompts still waiting in the scheduler's queue
        self.queued_tokens = sum(len(s) for s in self.sequences)
        self.cancelled = False
        self.aborted = False  # failed by Scheduler.abort (the server is going down)
        self.finished = threading.Event()
        self._on_done = on_done

    def _finish(self) -> None:
        if self.finished.is_set():  # aborted first, its batch ended later
            return
        self.finished.set()
        if self._on_done is not None:
            self._on_done(self)


class _Window:
    """Prompts taken from the queue together (one token budget), while their batches run."""

    def __init__(self, entries: list[tuple[Job, int]]):
        self.entries = entries
        self.sequences = [job.sequences[k] for job, k in entries]
        self.unfinished = set(range(len(entries)))  # entries without a result yet
        self.taken_at = time.perf_counter()


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
        self._queued_tokens = 0
        self._reserved_prompts = 0  # admitted requests still tokenizing
        self._running_tokens = 0    # tokens taken from the queue whose batches have not finished
        self._windows: set[_Window] = set()  # taken from the queue, not finished
        self._last_result = 0.0  # perf_counter of the last batch result (the rate's clock)
        self._open_jobs: set[Job] = set()
        self._rates: collections.deque[tuple[int, float]] = collections.deque(maxlen=RATE_BATCHES)
        self._aborted = False
        self._aborted_at: float | None = None
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

    @property
    def tokens_per_second(self) -> float | None:
        """Prompt tokens per second of model work over the last windows; None before any ran."""
        tokens = sum(t for t, _ in self._rates)
        seconds = sum(s for _, s in self._rates)
        return tokens / seconds if tokens and seconds > 0 else None

    def _refuse_unless_open(self) -> None:
        if self._stopping:
            raise QueueFull("the server is shutting down")
        if not self.ready.is_set():
            raise QueueFull("the model is still loading or warming up")

    def _check_deadline(self, own_tokens: int, deadline_s: float | None) -> None:
        """QueueFull when the work ahead (plus own_tokens) cannot finish within deadline_s at the
        measured rate. A request with nothing ahead is always taken: refusing it would only make its
        client retry into the same empty queue."""
        rate = self.tokens_per_second
        ahead = self._queued_tokens + self._running_tokens
        if deadline_s is None or rate is None or ahead == 0:
            return
        needed = (ahead + own_tokens) / rate
        if needed > deadline_s:
            raise QueueFull(f"the server is too busy to answer within the request deadline: {ahead} tokens ahead "
                            f"{'and ' + str(own_tokens) + ' of this request ' if own_tokens else ''}need ~{needed:.1f} s "
                            f"at {rate:.0f} tokens/s, {max(deadline_s, 0.0):.1f} s left", retry_after=ahead / rate)

    def admit(self, prompts: int, deadline_s: float | None = None) -> Ticket:
        """Reserve room for a request's prompts before it tokenizes; raises QueueFull rather than waiting.
        deadline_s: seconds left before the client gives up (None: no deadline check)."""
        with self._lock:
            self._refuse_unless_open()
            waiting = self._queued_prompts + self._reserved_prompts
            if waiting + prompts > self.max_queue_prompts:
                raise QueueFull(f"queue full: {waiting} prompts waiting, this request adds {prompts}, the limit is "
                                f"{self.max_queue_prompts} prompts")
            self._check_deadline(0, deadline_s)
            self._reserved_prompts += prompts
            return Ticket(prompts)

    def release(self, ticket: Ticket | None) -> None:
        """Give back an unused reservation (the request failed before submit); idempotent."""
        if ticket is None:
            return
        with self._lock:
            if ticket.open:
                ticket.open = False
                self._reserved_prompts -= ticket.prompts

    def submit(self, sequences: Sequence[Sequence[int]], on_done: Callable[[Job], None] | None = None,
               ticket: Ticket | None = None, deadline_s: float | None = None) -> Job:
        """Queue a request's prompts (into its reservation when given); raises QueueFull rather than waiting."""
        job = Job(sequences, on_done)
        with self._lock:
            self.release(ticket)
            if not job.sequences:
                job._finish()
                return job
            self._refuse_unless_open()
            if self._queued_prompts + self._reserved_prompts + len(job.sequences) > self.max_queue_prompts:
                raise QueueFull(f"queue full: {self._queued_prompts + self._reserved_prompts} prompts waiting, this "
                                f"request adds {len(job.sequences)}, the limit is {self.max_queue_prompts} prompts")
            self._check_deadline(sum(len(s) for s in job.sequences), deadline_s)
            self._queue.extend((job, k) for k in range(len(job.sequences)))
            self._queued_prompts += len(job.sequences)
            self._queued_tokens += sum(len(s) for s in job.sequences)
            self._open_jobs.add(job)
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
            self._queued_tokens -= job.queued_tokens
            job.queued = job.queued_tokens = 0
            self._open_jobs.discard(job)
            self._report_queue()

    def abort(self) -> None:
        """Stop now: every open job finishes at once as aborted (its request is answered 503), the
        queue empties, the worker ends after the batch it is running (if any)."""
        with self._lock:
            self._stopping = self._aborted = True
            self._aborted_at = time.monotonic()
            jobs = list(self._open_jobs)
            self._open_jobs.clear()
            self._queue.clear()
            self._queued_prompts = self._queued_tokens = 0
            self._report_queue()
            self._lock.notify_all()
        for job in jobs:
            job.cancelled = job.aborted = True
            job._finish()

    @property
    def worker_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking requests, finish every queued prompt, then end the worker. After `abort`, wait
        at most ABORT_GRACE_S more for it (a forward pass, or a model load, may run on)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            self._thread.join(0.05)
            now = time.monotonic()
            if deadline is not None and now > deadline:
                return
            if self._aborted_at is not None and now > self._aborted_at + ABORT_GRACE_S:
                return

    # -- worker side -------------------------------------------------------------------------------
    def _main(self) -> None:
        torch.set_num_threads(self._torch_threads)
        try:
            if self.judge is None:
                self.judge = self._load()
            if self._warmup:
                # One small batch: first-call costs (allocations, kernel selection) are paid before
                # /health says 200, not by the first client.
                self._warm_up()
        except BaseException as e:  # noqa: BLE001 - reported by /health and the CLI
            self.failed = e
            if self.on_failure is not None:
                self.on_failure()
            return
        self.ready.set()
        while True:
            try:
                for result in stream_batches(self.judge.backend, self._batches(), prefixes=self.judge.prefix_sharing()):
                    self._answer(result)
                return  # stopped, every queued prompt answered
            except Exception as e:  # noqa: BLE001 - a bug in one batch fails the prompts taken, not the server
                self._fail_taken(f"internal error while scoring: {type(e).__name__}: {e}")

    def _warm_up(self) -> None:
        spec = getattr(self.judge, "spec", None)
        if spec is None:  # a judge without specs: the card's pairs
            self.judge.compare_many([("Warm up.", "A short answer.", "Another short answer.")])
            return
        from ..specs.items import sample_item

        run = self.judge.compare_many if spec.pairwise else self.judge.score_many
        run([sample_item(spec)])

    def _batches(self):
        """The pipeline's source: each window's planned batches, as windows are taken from the queue; IDLE
        when the queue is empty (the batch in flight is then finished before the worker waits)."""
        while True:
            entries = self._next_window(wait=False)
            if entries is not None and not entries:
                yield IDLE
                entries = self._next_window(wait=True)
            if entries is None:
                return
            if not entries:
                continue
            window = _Window(entries)
            with self._lock:
                self._windows.add(window)
            batches, _ = self.judge.plan(window.sequences)
            for batch in batches:
                yield Batch([window.sequences[j] for j in batch], (window, batch))

    def _next_window(self, wait: bool) -> list[tuple[Job, int]] | None:
        """Queued prompts, oldest first, up to one token budget; [] when none is queued and not `wait`;
        None when stopped and drained, or aborted."""
        budget = self.judge.token_budget
        with self._lock:
            while wait and not self._queued_prompts and not self._stopping:
                self._lock.wait()
            if self._aborted:
                return None
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
                job.queued_tokens -= n
                self._queued_prompts -= 1
                self._queued_tokens -= n
                window.append((job, k))
                total += n
                longest = max(longest, n)
            self._running_tokens += total
            self._report_queue()
            if not window and self._stopping:
                return None
            return window

    def _answer(self, result: BatchResult) -> None:
        """A batch's results into its jobs; a job whose every prompt is answered finishes."""
        window, batch = result.batch.tag
        now = time.perf_counter()
        # Model time of this batch: since the previous result, or since its window was taken when the
        # device was idle in between (waiting for requests is not model work).
        seconds = now - max(self._last_result, window.taken_at)
        self._last_result = now
        real = sum(len(s) for s in result.batch.sequences)
        if self.metrics is not None:
            self.metrics.batch(real, result.computed_tokens, len(batch), seconds, self.judge.token_budget)
        rows = result.logits.tolist() if result.logits is not None else None
        finished = []
        for r, j in enumerate(batch):
            job, k = window.entries[j]
            if r in result.errors:
                job.errors[k] = result.errors[r]
            else:
                job.logits[k] = tuple(rows[r])  # every label's logit: two for A/B, five for a 1-5 rubric
            window.unfinished.discard(j)
            job.remaining -= 1
            if job.remaining == 0:
                finished.append(job)
        with self._lock:
            self._rates.append((real, seconds))
            self._running_tokens -= real
            if not window.unfinished:
                self._windows.discard(window)
            for job in finished:
                self._open_jobs.discard(job)
        for job in finished:
            job._finish()

    def _fail_taken(self, message: str) -> None:
        """Every prompt taken from the queue and not answered gets `message` (the pipeline failed)."""
        with self._lock:
            windows, self._windows = list(self._windows), set()
        finished = []
        for window in windows:
            for j in sorted(window.unfinished):
                job, k = window.entries[j]
                job.errors[k] = message
                job.remaining -= 1
                if job.remaining == 0:
                    finished.append(job)
            with self._lock:
                self._running_tokens -= sum(len(window.sequences[j]) for j in window.unfinished)
            window.unfinished.clear()
        with self._lock:
            for job in finished:
                self._open_jobs.discard(job)
        for job in finished:
            job._finish()

    def _report_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue(self._queued_prompts)
