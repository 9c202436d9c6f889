"""Projections that several checkpoint Linears feed: fused into one GEMM at load time, or kept apart.

Qwen3.5 reads one input through several Linears (q/k/v of attention; qkv/z/b/a of Gated DeltaNet;
gate/up of the MLP). Concatenating their weights at load time (as gpt-fast does for q/k/v) turns 2-4
GEMMs into one; the parts come back as views of the one output. A GPTQ checkpoint keeps its 4-bit
layers apart (one GPTQLinear each): `SplitLinear` runs them one by one and returns the same parts.
"""

from __future__ import annotations

import torch
from torch import nn


class FusedLinear(nn.Module):
    """y = x @ W^T with W = cat(W_part for part in parts); forward returns the parts' outputs.

    weight: [sum(out_sizes), in_features]. `part_names` are the checkpoint Linears it was built from,
    relative to the parent module (e.g. "q_proj"), in order.
    """

    def __init__(self, in_features: int, out_sizes: list[int], part_names: list[str], *, device=None,
                 dtype=None):
        super().__init__()
        if len(out_sizes) != len(part_names):
            raise ValueError(f"FusedLinear: {len(out_sizes)} sizes for {len(part_names)} parts {part_names}")
        self.in_features, self.out_sizes, self.part_names = in_features, list(out_sizes), list(part_names)
        self.weight = nn.Parameter(torch.empty(sum(out_sizes), in_features, device=device, dtype=dtype),
                                   requires_grad=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x [T, in] -> one [T, out_i] view per part (rows strided by sum(out_sizes))."""
        return torch.nn.functional.linear(x, self.weight).split(self.out_sizes, dim=-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, parts={dict(zip(self.part_names, self.out_sizes))}"


class SplitLinear(nn.Module):
    """The unfused form of `FusedLinear`: one module per part (nn.Linear or GPTQLinear)."""

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        self.part_names = list(parts)
        self.parts = nn.ModuleDict(parts)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.parts[name](x) for name in self.part_names)
