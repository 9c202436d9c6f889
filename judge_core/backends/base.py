"""The contract between the runner and a forward backend.

A backend turns a batch of token lists into the logits of the candidate tokens ("A", "B") at each
list's last position. It never computes full-vocabulary logits. It knows nothing of pairs, prompts
or scheduling: the planner decides what goes into a batch, the runner handles failures.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch


class Backend(Protocol):
    name: str                 # "hf", "packed", ...
    device: torch.device
    dtype: torch.dtype
    max_context: int          # longest prompt (tokens) the model accepts
    counts_padding: bool      # True: a batch costs rows x longest tokens; False: the sum of lengths

    def candidate_logits(self, batch: Sequence[Sequence[int]]) -> torch.Tensor:
        """Logits of the candidate tokens at each sequence's last token.

        batch: token id lists, each non-empty, each at most `max_context` long.
        returns: float32 tensor [len(batch), n_candidates] on the CPU, rows in batch order.
        May raise an out-of-memory error (see `runner.is_oom`); the runner then splits the batch.
        """
        ...
