"""FP8 (e4m3) rounding: weights per output channel or per block, activations per row, and the inverse.

One function per rounding step, shared by the GPU path and the CPU twin so that both hand the GEMM
bit-identical fp8 operands. Scales are "decoding" scales: value = fp8 * scale, scale = amax / 448.
"""

from __future__ import annotations

import math
import re

import torch

from .format import FP8_DTYPE, FP8_MAX

# What the published Qwen3.5 FP8 recipes keep in bf16 (MEASURED.md "FP8 headroom"): the head, GDN's
# 32-wide gate projections (in_proj_b / in_proj_a; some engines fuse them as in_proj_ba), the vision
# tower and the MTP head the judge never runs. Embeddings, the conv and norms are not Linears and are
# never touched. Patterns follow transformers' `modules_to_not_convert` matching (see `matches`).
DEFAULT_SKIP = ("lm_head", "in_proj_a", "in_proj_b", "in_proj_ba", "model.visual", "visual", "mtp", "model.mtp")
# torch._scaled_mm needs both GEMM dims (in and out features) to be multiples of 16.
GEMM_ALIGN = 16
# Activations whose row is all zeros still need a positive scale (0 / 0 would be NaN).
_MIN_SCALE = 1e-12


def matches(name: str, patterns) -> str | None:
    """The first pattern that names module `name`, as transformers matches `modules_to_not_convert`:
    from the start up to a module boundary, as a regex with that boundary, or as a suffix."""
    for p in patterns:
        if name.endswith(p) or re.match(rf"(?:{p})(?:(?<=\.)|(?=\.|$))", name):
            return p
    return None


def float_reason(name: str, weight: torch.Tensor, skip=DEFAULT_SKIP) -> str | None:
    """Why Linear `name` with `weight` [out, in] must stay in float, or None when it can be FP8."""
    hit = matches(name, skip)
    if hit is not None:
        return f"in the skip list ({hit!r})"
    if weight.dim() != 2:
        return f"weight has {weight.dim()} dims, expected 2"
    out_f, in_f = weight.shape
    if out_f % GEMM_ALIGN or in_f % GEMM_ALIGN:
        return f"shape [{out_f}, {in_f}] has a dimension not divisible by {GEMM_ALIGN} (scaled GEMM)"
    if not bool(torch.isfinite(weight).all()):
        return "weights hold non-finite values (inf/nan): no finite FP8 scale exists"
    return None


def quantize_weight(w: torch.Tensor, block: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """w [out, in] float -> (fp8 e4m3 [out, in], float32 scales) with w ~= fp8 * scale.

    block None: per output channel, scales [out] = amax(row) / 448.
    block (b0, b1): per block, scales [ceil(out / b0), ceil(in / b1)] (the checkpoint's `weight_scale_inv`).
    An all-zero row or block gets scale 1 (its fp8 values are exact zeros). Values as large as bf16 holds
    (DESIGN §4: some Qwen3.5 tensors reach 1e36) still give finite float32 scales; non-finite weights
    raise, naming how many, since no scale represents them.
    """
    if w.dim() != 2:
        raise ValueError(f"quantize_weight: expected a 2-D weight [out, in], got shape {tuple(w.shape)}")
    w32 = w.detach().float()
    bad = int((~torch.isfinite(w32)).sum())
    if bad:
        raise ValueError(f"quantize_weight: {bad} non-finite values in a weight of shape {tuple(w.shape)}: "
                         "keep this layer in float")
    out_f, in_f = w32.shape
    if block is None:
        amax = w32.abs().amax(dim=1)
        scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
        q = (w32 / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        return q, scale
    b0, b1 = block
    rows, cols = math.ceil(out_f / b0), math.ceil(in_f / b1)
    padded = w32.new_zeros(rows * b0, cols * b1)
    padded[:out_f, :in_f] = w32
    tiles = padded.reshape(rows, b0, cols, b1)
    amax = tiles.abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (tiles / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).reshape(rows * b0, cols * b1)
    return q[:out_f, :in_f].to(FP8_DTYPE).contiguous(), scale


def dequantize_fp8_tensor(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] | None = None,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An FP8 checkpoint weight [out, in] and its scale -> the float weight, in `dtype`.

    scale_inv: a scalar or [1] (per tensor), [out] or [out, 1] (per channel), or, with `block`,
    [ceil(out / b0), ceil(in / b1)] (the ecosystem's `weight_scale_inv`). Math in float32.
    """
    if weight.dim() != 2:
        raise ValueError(f"dequantize_fp8_tensor: expected a 2-D weight, got shape {tuple(weight.shape)}")
    out_f, in_f = weight.shape
    w = weight.float()
    s = scale_inv.float()
    if block is not None:
        b0, b1 = block
        grid = (math.ceil(out_f / b0), math.ceil(in_f / b1))
        if tuple(s.shape) != grid:
            raise ValueError(f"dequantize_fp8_tensor: scale shape {tuple(s.shape)} does not fit weight "
                             f"[{out_f}, {in_f}] with block {tuple(block)}: expected {grid}")
        full = s.repeat_interleave(b0, dim=0)[:out_f].repeat_interleave(b1, dim=1)[:, :in_f]
        return (w * full).to(dtype)
    if s.numel() == 1:
        return (w * s.reshape(())).to(dtype)
    if tuple(s.shape) in ((out_f,), (out_f, 1)):
        return (w * s.reshape(out_f, 1)).to(dtype)
    raise ValueError(f"dequantize_fp8_tensor: scale shape {tuple(s.shape)} for weight [{out_f}, {in_f}] "
                     "without a block size: expected a scalar, [out] or [out, 1]")


def quantize_activation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (fp8 e4m3 [M, K], float32 scales [M, 1]) with x ~= fp8 * scale, one scale per row
    (per token: dynamic activation scaling)."""
    # One fp32 temporary, not three (at 32k tokens x 9216 each is 1.2 GB): the row max is exact in x's
    # own dtype, and x / scale promotes to fp32 before dividing, so the bits equal x.float()'s path.
    scale = (x.abs().amax(dim=1, keepdim=True).float() / FP8_MAX).clamp(min=_MIN_SCALE)
    return (x / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale
