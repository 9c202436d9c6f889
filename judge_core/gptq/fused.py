"""FusedGPTQLinear: the GPTQ form of a fused projection group (q/k/v, GDN's qkv/z/b/a, gate/up).

The packed model fuses the Linears that read one input into one GEMM (models/linear.py). GPTQ tensors
concatenate the same way: qweight [in/8, out], scales [groups, out] and qzeros [groups, out/8] along
their last dim, bias along its only one, as long as the parts share the input-row grouping
(group_size, and g_idx under act-order). Then one dequantize and one GEMM serve all quantized parts
instead of one each (SplitLinear). Parts the checkpoint keeps in float (too narrow to pack, e.g. a small
model's GDN in_proj_b / in_proj_a) share one small float GEMM, as in fp8.linear.FP8FusedLinear; the
output is the same views, in part order, that FusedLinear gives.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .linear import GPTQLinear

# the dim along which each GPTQ tensor holds the output columns
OUT_DIM = {"qweight": 1, "qzeros": 1, "scales": 1, "bias": 0}


class FusedGPTQLinear(GPTQLinear):
    """cat(quantized parts) as one GPTQLinear, plus cat(float parts) as `float_weight` [out_f, in] (or
    None); forward returns one [T, out_i] tensor per part, in `part_names` order."""

    def __init__(self, in_features: int, out_sizes: list[int], part_names: list[str], quantized: list[bool],
                 n_groups: int, cfg, *, bias: bool = False, device=None):
        if not any(quantized):
            raise ValueError(f"FusedGPTQLinear {part_names}: no quantized part")
        q_out = sum(s for s, q in zip(out_sizes, quantized) if q)
        super().__init__(in_features, q_out, n_groups, cfg, bias=bias, device=device)
        self.out_sizes, self.part_names, self.quantized = list(out_sizes), list(part_names), list(quantized)
        f_out = sum(s for s, q in zip(out_sizes, quantized) if not q)
        self.float_weight = (nn.Parameter(torch.empty(f_out, in_features, device=device), requires_grad=False)
                             if f_out else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q_sizes = [s for s, q in zip(self.out_sizes, self.quantized) if q]
        q_out = iter(super().forward(x).split(q_sizes, dim=-1))
        if self.float_weight is None:
            return tuple(q_out)
        f_sizes = [s for s, q in zip(self.out_sizes, self.quantized) if not q]
        f_out = iter(torch.nn.functional.linear(x, self.float_weight.to(x.dtype)).split(f_sizes, dim=-1))
        return tuple(next(q_out) if q else next(f_out) for q in self.quantized)

    def state_from_parts(self, read_part: Callable[[str, str], torch.Tensor], dtype: torch.dtype) -> dict:
        """The fused tensors from each part's checkpoint tensors: read_part(part, tensor_name). The parts'
        g_idx are one (gptq.swap fuses only then)."""
        q_parts = [p for p, q in zip(self.part_names, self.quantized) if q]
        names = ["qweight", "qzeros", "scales"] + (["bias"] if self.bias is not None else [])
        state = {name: torch.cat([read_part(p, name) for p in q_parts], dim=OUT_DIM[name]).to(getattr(self, name).dtype)
                 for name in names}
        g_idx = [read_part(p, "g_idx") for p in q_parts]
        if any(not torch.equal(g, g_idx[0]) for g in g_idx[1:]):
            raise ValueError(f"FusedGPTQLinear {q_parts}: the parts' g_idx differ (load them split)")
        state["g_idx"] = g_idx[0].to(torch.int32)
        f_parts = [p for p, q in zip(self.part_names, self.quantized) if not q]
        if f_parts:
            state["float_weight"] = torch.cat([read_part(p, "weight") for p in f_parts], dim=0).to(dtype)
        return state

    def extra_repr(self) -> str:
        parts = {n: (s if q else f"{s} float") for n, s, q in zip(self.part_names, self.out_sizes, self.quantized)}
        return f"{super().extra_repr()}, parts={parts}"
