"""Projections that several checkpoint Linears feed: fused into one GEMM at load time, or kept apart.

Qwen3.5 reads one input through several Linears (q/k/v of attention; qkv/z/b/a of Gated DeltaNet;
gate/up of the MLP). Concatenating their weights at load time (as gpt-fast does for q/k/v) turns 2-4
GEMMs into one; the parts come back as views of the one output. A GPTQ checkpoint keeps its 4-bit
layers apart (one GPTQLinear each): `SplitLinear` runs them one by one and returns the same parts.

`compute_dtype` (FusedLinear and `Linear`, set from the KernelSet's `matmul` choice by the model): on a CPU
without bf16/fp16 GEMM instructions (AVX2 only) torch's half-precision GEMM is a generic kernel 9-17x
slower than its fp32 one (bench/RESULTS.md), so there the GEMM runs on fp32 copies of input and weight
and the output is rounded back: products of bf16 numbers are exact in fp32, only the accumulation order
differs from a native bf16 GEMM (which accumulates in fp32 too). The copies are transient, per call.
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
        self.compute_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x [T, in] -> one [T, out_i] view per part (rows strided by sum(out_sizes))."""
        return linear_in(x, self.weight, None, self.compute_dtype).split(self.out_sizes, dim=-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, parts={dict(zip(self.part_names, self.out_sizes))}"


class Linear(nn.Linear):
    """nn.Linear whose GEMM may run in `compute_dtype` (see the module doc); the checkpoint layout is nn.Linear's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.compute_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_in(x, self.weight, self.bias, self.compute_dtype)


def linear_in(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
              compute_dtype: torch.dtype | None) -> torch.Tensor:
    """x @ weight^T (+ bias), the GEMM in compute_dtype when it differs from x's; output in x's dtype."""
    if compute_dtype is None or compute_dtype == x.dtype:
        return torch.nn.functional.linear(x, weight, bias)
    bias = None if bias is None else bias.to(compute_dtype)
    return torch.nn.functional.linear(x.to(compute_dtype), weight.to(compute_dtype), bias).to(x.dtype)


def set_compute_dtype(model: nn.Module, compute_dtype: torch.dtype | None) -> None:
    """Every FusedLinear / Linear of `model` runs its GEMM in compute_dtype (None: its own dtype)."""
    for module in model.modules():
        if isinstance(module, (FusedLinear, Linear)):
            module.compute_dtype = compute_dtype


class SplitLinear(nn.Module):
    """The unfused form of `FusedLinear`: one module per part (nn.Linear or GPTQLinear)."""

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        self.part_names = list(parts)
        self.parts = nn.ModuleDict(parts)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.parts[name](x) for name in self.part_names)
