"""Service counters, rendered in the Prometheus text format (0.0.4) with no client library.

Written by the scheduler thread (batches, queue) and the event loop (requests); a lock keeps the
text consistent.
"""

from __future__ import annotations

import threading
import time
from collections import deque

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RATE_WINDOW_S = 30.0  # tokens/s is measured over the batches of the last 30 s of model time


class ServeMetrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.queue_prompts = 0
        self.batches = 0
        self.batch_real_tokens = 0
        self.batch_budget_tokens = 0
        self.last_batch_fill = 0.0
        self.model_seconds = 0.0
        self.prompts = 0
        self.pairs_scored = 0
        self.pair_errors = 0
        self.requests: dict[tuple[str, int], int] = {}
        self.cancelled = 0
        self._latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum = 0.0
        self._recent: deque[tuple[float, int, float]] = deque()  # (end time, tokens, seconds)

    # -- scheduler thread ---------------------------------------------------------------------
    def batch(self, real_tokens: int, computed_tokens: int, prompts: int, seconds: float, budget: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.batches += 1
            self.prompts += prompts
            self.batch_real_tokens += real_tokens
            self.batch_budget_tokens += budget
            self.last_batch_fill = real_tokens / budget
            self.model_seconds += seconds
            self._recent.append((now, real_tokens, seconds))
            while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
                self._recent.popleft()

    def queue(self, prompts: int) -> None:
        self.queue_prompts = prompts  # one int store: no lock needed

    # -- event loop -----------------------------------------------------------------------------
    def request(self, endpoint: str, status: int, seconds: float, pairs_ok: int = 0, pairs_failed: int = 0) -> None:
        with self._lock:
            key = (endpoint, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.pairs_scored += pairs_ok
            self.pair_errors += pairs_failed
            self._latency_sum += seconds
            for b, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    self._latency_counts[b] += 1
                    break
            else:
                self._latency_counts[-1] += 1

    def request_cancelled(self) -> None:
        with self._lock:
            self.cancelled += 1

    @property
    def mean_batch_fill(self) -> float:
        return self.batch_real_tokens / self.batch_budget_tokens if self.batch_budget_tokens else 0.0

    def tokens_per_second(self) -> float:
        tokens = sum(t for _, t, _ in self._recent)
        seconds = sum(s for _, _, s in self._recent)
        return tokens / seconds if seconds > 0 else 0.0

    def render(self) -> str:
        with self._lock:
            lines = []

            def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]):
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                lines.extend(f"{name}{labels} {value}" for labels, value in samples)

            metric("judge_queue_prompts", "gauge", "Prompts waiting for the model (2 per pair).",
                   [("", self.queue_prompts)])
            metric("judge_batches_total", "counter", "Forward batches run.", [("", self.batches)])
            metric("judge_batch_fill_ratio", "gauge", "Real tokens / token budget: last batch and mean.",
                   [('{window="last"}', self.last_batch_fill), ('{window="mean"}', self.mean_batch_fill)])
            metric("judge_prompt_tokens_total", "counter", "Prompt tokens run through the model.",
                   [("", self.batch_real_tokens)])
            metric("judge_model_seconds_total", "counter", "Seconds the worker spent in forward batches.",
                   [("", self.model_seconds)])
            metric("judge_tokens_per_second", "gauge", f"Prompt tokens per model second over the last "
                   f"{RATE_WINDOW_S:.0f} s.", [("", self.tokens_per_second())])
            metric("judge_pairs_scored_total", "counter", "Pairs answered with a verdict.", [("", self.pairs_scored)])
            metric("judge_pair_errors_total", "counter", "Pairs answered with an error entry.",
                   [("", self.pair_errors)])
            metric("judge_requests_total", "counter", "HTTP requests by endpoint and status.",
                   [(f'{{endpoint="{e}",status="{s}"}}', n) for (e, s), n in sorted(self.requests.items())])
            metric("judge_requests_cancelled_total", "counter",
                   "Requests whose client left or timed out; their queued prompts were dropped.",
                   [("", self.cancelled)])
            cumulative, samples = 0, []
            for bound, count in zip(LATENCY_BUCKETS_S, self._latency_counts):
                cumulative += count
                samples.append((f'_bucket{{le="{bound}"}}', cumulative))
            cumulative += self._latency_counts[-1]
            samples += [('_bucket{le="+Inf"}', cumulative), ("_sum", self._latency_sum), ("_count", cumulative)]
            lines.append("# HELP judge_request_seconds Request latency, arrival to response.")
            lines.append("# TYPE judge_request_seconds histogram")
            lines.extend(f"judge_request_seconds{suffix} {value}" for suffix, value in samples)
            return "\n".join(lines) + "\n"
