"""The service's limits and knobs in one typed place (CLI flags fill it; tests build it directly)."""

from __future__ import annotations

import os
from dataclasses import dataclass

API_KEY_ENV = "JUDGE_CORE_API_KEY"


@dataclass(frozen=True)
class ServeLimits:
    """max_body_bytes:        a larger request body is refused with 413.
    max_pairs_per_request: more pairs in one request (rewards: pairs after expansion) -> 422. The
                           default takes a whole OpenRLHF rollout batch in one request (128 prompts
                           x 8 samples as round robins = 3,584 pairs); the body size and the queue
                           bound the work, not the pair count.
    max_queue_pairs:       pairs waiting for the model across all requests; a request that would
                           overflow it gets 503 with Retry-After before any work (back-pressure).
    request_timeout_s:     a request still unanswered after this gets 504; its queued prompts are dropped.
    request_deadline_s:    when the work ahead of a request (at the measured tokens per second) cannot
                           finish within this many seconds of its arrival, it gets 503 with Retry-After
                           at once, so that the client retries instead of timing out: OpenRLHF gives up
                           after 180 s and then leaves the reward empty. None: no such check.
    header_timeout_s:      a connection whose request line and headers are not complete this long
                           after they started (or after the connection opened) is closed.
    body_timeout_s:        a request body not fully received this long after its headers gets 408.
    api_key:               when set, POST endpoints need `Authorization: Bearer <key>` (401 otherwise).
    retry_after_s:         the Retry-After value sent with 503 when no better estimate exists.
    """

    max_body_bytes: int = 64 * 1024 * 1024
    max_pairs_per_request: int = 16384
    max_queue_pairs: int = 32768
    request_timeout_s: float = 600.0
    request_deadline_s: float | None = 170.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    api_key: str | None = None
    retry_after_s: int = 1

    def __post_init__(self):
        for name in ("max_body_bytes", "max_pairs_per_request", "max_queue_pairs", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_queue_pairs < self.max_pairs_per_request:
            # Otherwise a request at the per-request limit could never be queued and would get 503 forever.
            raise ValueError(f"max_queue_pairs ({self.max_queue_pairs}) must be >= max_pairs_per_request "
                             f"({self.max_pairs_per_request})")
        for name in ("request_timeout_s", "request_deadline_s", "header_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            if name == "request_deadline_s" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")


def api_key_from(flag: str | None) -> str | None:
    """--api-key wins; else JUDGE_CORE_API_KEY; an empty value means no auth."""
    key = flag if flag is not None else os.environ.get(API_KEY_ENV)
    return key or None
