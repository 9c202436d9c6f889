"""The service's limits and knobs in one typed place (CLI flags fill it; tests build it directly)."""

from __future__ import annotations

import os
from dataclasses import dataclass

API_KEY_ENV = "JUDGE_CORE_API_KEY"


@dataclass(frozen=True)
class ServeLimits:
    """max_body_bytes:        a larger request body is refused with 413.
    max_pairs_per_request: more pairs in one request (rewards: pairs after expansion) -> 422.
    max_queue_pairs:       pairs waiting for the model across all requests; a request that would
                           overflow it gets 503 with Retry-After (back-pressure, not an OOM).
    request_timeout_s:     a request still unanswered after this gets 504; its queued prompts are dropped.
    api_key:               when set, POST endpoints need `Authorization: Bearer <key>` (401 otherwise).
    retry_after_s:         the Retry-After value sent with 503.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    max_pairs_per_request: int = 1024
    max_queue_pairs: int = 8192
    request_timeout_s: float = 600.0
    api_key: str | None = None
    retry_after_s: int = 1

    def __post_init__(self):
        for name in ("max_body_bytes", "max_pairs_per_request", "max_queue_pairs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_queue_pairs < self.max_pairs_per_request:
            # Otherwise a request at the per-request limit could never be queued and would get 503 forever.
            raise ValueError(f"max_queue_pairs ({self.max_queue_pairs}) must be >= max_pairs_per_request "
                             f"({self.max_pairs_per_request})")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s!r}")


def api_key_from(flag: str | None) -> str | None:
    """--api-key wins; else JUDGE_CORE_API_KEY; an empty value means no auth."""
    key = flag if flag is not None else os.environ.get(API_KEY_ENV)
    return key or None
