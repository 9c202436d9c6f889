"""A packed batch: prompts laid back to back with nothing between them, and where each one starts.

Built as Python lists on the host and copied to the device in ONE transfer (nano-vllm's habit):
token ids, per-prompt positions, cu_seqlens and last-row indices travel as one int64 tensor and are
sliced into views on arrival.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class PackedBatch:
    """Layout of N prompts, T rows in all.

    input_ids: [T] int64; positions: [T] int64, restarting at 0 at every prompt start;
    cu_seqlens: [N + 1] int64 (prompt i is rows cu_seqlens[i]:cu_seqlens[i + 1]); last_rows: [N] int64
    (each prompt's last row); bounds: cu_seqlens as a host list; max_seqlen: the longest prompt.
    """

    input_ids: torch.Tensor
    positions: torch.Tensor
    cu_seqlens: torch.Tensor
    last_rows: torch.Tensor
    bounds: list[int]
    max_seqlen: int
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_tokens(self) -> int:
        return self.bounds[-1]

    @property
    def num_prompts(self) -> int:
        return len(self.bounds) - 1

    def cached(self, key: str, build):
        """Something derived from the layout, built once per batch and shared by all layers."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @classmethod
    def from_token_lists(cls, batch: Sequence[Sequence[int]], device: torch.device | str) -> "PackedBatch":
        """Concatenate the prompts; one host-to-device copy."""
        if len(batch) == 0:
            raise ValueError("empty batch: expected at least one token list")
        bounds, ids, positions = [0], [], []
        for i, tokens in enumerate(batch):
            if len(tokens) == 0:
                raise ValueError(f"prompt {i} of the batch is empty: every prompt needs at least one token")
            ids.extend(tokens)
            positions.extend(range(len(tokens)))
            bounds.append(bounds[-1] + len(tokens))
        total, count = bounds[-1], len(batch)
        last_rows = [end - 1 for end in bounds[1:]]
        host = torch.tensor(ids + positions + bounds + last_rows, dtype=torch.int64)
        device = torch.device(device)
        if device.type == "cuda":
            host = host.pin_memory()
        flat = host.to(device, non_blocking=True)
        return cls(input_ids=flat[:total], positions=flat[total:2 * total],
                   cu_seqlens=flat[2 * total:2 * total + count + 1], last_rows=flat[2 * total + count + 1:],
                   bounds=bounds, max_seqlen=max(e - s for s, e in zip(bounds[:-1], bounds[1:])))
