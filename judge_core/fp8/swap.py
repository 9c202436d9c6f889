"""Quantize-at-load: swap a model's float projections for FP8 ones, in place.

Works on a transformers Qwen3.5 (plain nn.Linear: `model.layers.N.linear_attn.in_proj_qkv`, ...) and on
our packed model (judge_core.models.qwen3_5), whose projections are `FusedLinear`s: a fused group
becomes an `FP8FusedLinear` whose float parts (GDN's in_proj_b / in_proj_a) stay in a small float GEMM.
Embeddings, the conv, norms, the label tokens' head rows (`label_rows`) are not Linears and are never touched.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .linear import FP8FusedLinear, FP8Linear
from .quantize import DEFAULT_SKIP, float_reason, quantize_weight

log = logging.getLogger(__name__)


def _fp8_linear(weight: torch.Tensor, block, compute: str) -> FP8Linear:
    if block is None:
        return FP8Linear.from_float(weight, compute=compute)
    q, scale = quantize_weight(weight, block)   # as a block-scaled checkpoint would store it
    return FP8Linear.from_fp8(q, scale, block, out_dtype=weight.dtype, compute=compute)


@torch.no_grad()
def quantize_model_fp8_(model: nn.Module, *, skip=DEFAULT_SKIP, block: tuple[int, int] | None = None,
                        compute: str = "auto", only=None) -> list[str]:
    """Swap every quantizable Linear of `model` for W8A8 FP8, in place; returns the Linear names swapped
    (checkpoint-style: a fused group's parts by their own names), in module order.

    skip: module-name patterns kept in float (transformers' `modules_to_not_convert` matching).
    block: None rounds weights per output channel; (b0, b1) rounds them per block first, as a
        block-scaled checkpoint stores them, then loads them as `FP8Linear.from_fp8` does.
    compute: "auto" | "twin" | "scaled_mm" (see fp8.linear).
    only: when given, the Linear names that may be quantized (a pre-quantized checkpoint's fp8 layers,
        `FP8CheckpointReader.fp8_modules`); the others stay float.
    What stays in float is logged with its reason (skip list, a dimension not divisible by 16,
    non-finite weights, a bias).
    """
    from ..gptq.linear import GPTQLinear
    from ..models.linear import FusedLinear, Linear, SplitLinear

    swapped: list[str] = []
    kept: dict[str, str] = {}
    only = None if only is None else set(only)

    def reason_for(name: str, weight: torch.Tensor) -> str | None:
        if only is not None and name not in only:
            return "stored in float in the checkpoint"
        return float_reason(name, weight, skip)
    for name, module in list(model.named_modules()):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(module, (SplitLinear, GPTQLinear)):
            raise ValueError(f"fp8 quantization of a GPTQ model ({name} is {type(module).__name__}): "
                             "load the float checkpoint with quantization='fp8', or the GPTQ one without it")
        if isinstance(module, FusedLinear):
            prefix = f"{parent_name}." if parent_name else ""
            pieces = module.weight.split(module.out_sizes, dim=0)
            reasons = [reason_for(f"{prefix}{p}", w) for p, w in zip(module.part_names, pieces)]
            kept.update({f"{prefix}{p}": r for p, r in zip(module.part_names, reasons) if r})
            if all(reasons):
                continue
            quantized = [r is None for r in reasons]
            if block is None:
                new = FP8FusedLinear.from_fused(module, quantized, compute=compute)
            else:
                q_w = torch.cat([w for w, q in zip(pieces, quantized) if q])
                f_w = [w for w, q in zip(pieces, quantized) if not q]
                new = FP8FusedLinear(module.in_features, module.out_sizes, module.part_names, quantized,
                                     _fp8_linear(q_w, block, compute), torch.cat(f_w).contiguous() if f_w else None)
            setattr(parent, child, new)
            swapped += [f"{prefix}{p}" for p, q in zip(module.part_names, quantized) if q]
        elif type(module) in (nn.Linear, Linear):   # not subclasses that hold other weights
            reason = reason_for(name, module.weight)
            if reason is None and module.bias is not None:
                reason = "has a bias (FP8Linear has none)"
            if reason:
                kept[name] = reason
                continue
            setattr(parent, child, _fp8_linear(module.weight.detach(), block, compute))
            swapped.append(name)
    log.info("fp8: %d Linears quantized, %d kept in float", len(swapped), len(kept))
    for name, reason in kept.items():
        log.info("fp8: kept %s in float: %s", name, reason)
    return swapped
