"""Causal self-attention over packed prompts: each prompt attends only to its own earlier rows.

Implementations:
- `varlen_attention_naive`: explicit float32 softmax(q k^T) v per prompt (the twin).
- `varlen_attention_masked`: one SDPA call over the whole pack with a block-diagonal causal mask
  (a second reference; O(T^2) memory, tests only).
- `varlen_attention_sdpa`: one SDPA call per prompt with `is_causal=True` (CPU, and GPUs without
  flash-attn: SDPA's own flash backend handles head_dim 256 on sm_80+), GQA by SDPA's `enable_gqa`
  (torch >= 2.5) instead of repeated k/v copies. A 32k-token batch of judge prompts holds ~10-20
  prompts, so the Python loop is ~10-20 calls per layer. On the CPU this is the fastest exact route
  torch offers (bench/RESULTS.md, issue 22): torch's CPU flash kernel skips the masked half of each
  causal prompt; one padded [N, H, Lmax, D] call measured 40% slower at head_dim 256 (padding copies,
  padded rows), nested tensors refuse `is_causal`, and `varlen_attn` has no CPU kernel.
- `varlen_attention_torch`: torch's own `torch.nn.attention.varlen.varlen_attn` (FlashAttention-2 in
  torch's CUDA build, sm_80 and newer, bf16/fp16, head_dim up to 256): one launch per layer, no
  extra install. Its signature changed: 2.10 `is_causal` (no scale), 2.11 `scale`, `window_size`, 2.12
  `enable_gqa`; `varlen_attention_torch` adapts to the installed torch.
- flash-attn's `flash_attn_varlen_func` on CUDA when installed (one launch per layer).
The KernelSet (ops/kernels.py) picks: flash_attn, else torch varlen (CUDA, half dtypes, sm_80+), else
the per-prompt SDPA loop (CPU, fp32, and anything else).
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F

# Chosen once per (device, dtype) by ops/kernels.py (KernelSet.attention), never here.
ATTENTION_IMPLS = ("flash_attn", "varlen", "sdpa", "masked", "naive")


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> int:
    if q.ndim != 3 or k.shape != v.shape or k.ndim != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"varlen attention: expected q [T, H, D], k and v [T, Hkv, D], got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"varlen attention: query heads ({q.shape[1]}) must be a multiple of kv heads ({k.shape[1]})")
    return q.shape[1] // k.shape[1]


def varlen_attention_naive(q, k, v, bounds: list[int], scale: float) -> torch.Tensor:
    """Reference twin. q [T, H, D]; k, v [T, Hkv, D]; bounds: cu_seqlens as a host list. -> [T, H, D]."""
    groups = _check(q, k, v)
    out = torch.empty_like(q)
    for start, end in zip(bounds[:-1], bounds[1:]):
        qs = q[start:end].float().transpose(0, 1)                                    # [H, L, D]
        ks = k[start:end].float().repeat_interleave(groups, dim=1).transpose(0, 1)
        vs = v[start:end].float().repeat_interleave(groups, dim=1).transpose(0, 1)
        scores = (qs @ ks.transpose(-1, -2)) * scale
        future = torch.ones(end - start, end - start, dtype=torch.bool, device=q.device).triu(1)
        probs = scores.masked_fill(future, float("-inf")).softmax(-1)
        out[start:end] = (probs @ vs).transpose(0, 1).to(q.dtype)
    return out


def varlen_attention_masked(q, k, v, seq_ids: torch.Tensor, scale: float) -> torch.Tensor:
    """One SDPA call with a block-diagonal causal mask. seq_ids: [T], the prompt index of each row."""
    groups = _check(q, k, v)
    rows = torch.arange(q.shape[0], device=q.device)
    allowed = (seq_ids[:, None] == seq_ids[None, :]) & (rows[:, None] >= rows[None, :])
    kx, vx = (x.repeat_interleave(groups, dim=1).transpose(0, 1) for x in (k, v))
    out = F.scaled_dot_product_attention(q.transpose(0, 1), kx, vx, attn_mask=allowed, scale=scale)
    return out.transpose(0, 1)


def varlen_attention_sdpa(q, k, v, bounds: list[int], scale: float) -> torch.Tensor:
    """One causal SDPA call per prompt. Shapes as `varlen_attention_naive`."""
    groups = _check(q, k, v)
    # enable_gqa keeps torch's flash backend on the CPU (measured 14% faster than repeating k/v there);
    # on CUDA some SDPA backends lack GQA, so k/v are repeated (a few MB) to keep every backend eligible.
    gqa = groups > 1 and q.device.type == "cpu" and sdpa_has_gqa()
    out = torch.empty_like(q)
    for start, end in zip(bounds[:-1], bounds[1:]):
        qs = q[start:end].transpose(0, 1)[None]                                       # [1, H, L, D]
        if gqa:
            ks, vs = (x[start:end].transpose(0, 1)[None] for x in (k, v))
            y = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale, enable_gqa=True)
        else:
            ks, vs = (x[start:end].repeat_interleave(groups, dim=1).transpose(0, 1)[None] for x in (k, v))
            y = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale)
        out[start:end] = y[0].transpose(0, 1)
    return out


@functools.cache
def sdpa_has_gqa() -> bool:
    """SDPA's enable_gqa flag (torch >= 2.5)."""
    try:
        return "enable_gqa" in inspect.signature(F.scaled_dot_product_attention).parameters
    except (TypeError, ValueError):   # a builtin without a readable signature: try it
        try:
            x = torch.zeros(1, 2, 1, 4)
            F.scaled_dot_product_attention(x, x[:, :1], x[:, :1], enable_gqa=True)
            return True
        except TypeError:
            return False


@functools.cache
def _torch_varlen_params() -> frozenset:
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def varlen_attention_torch(q, k, v, cu_seqlens: torch.Tensor, max_seqlen: int, scale: float) -> torch.Tensor:
    """torch's varlen flash attention, causal. Shapes as `varlen_attention`."""
    from torch.nn.attention.varlen import varlen_attn

    groups = _check(q, k, v)
    params = _torch_varlen_params()
    kwargs = {}
    if "scale" in params:
        kwargs["scale"] = scale
    elif abs(scale - q.shape[-1] ** -0.5) > 1e-9:    # torch 2.10 always uses 1/sqrt(head_dim)
        raise ValueError(f"this torch's varlen_attn has no scale argument; scale {scale} != head_dim^-0.5")
    if "window_size" in params:
        kwargs["window_size"] = (-1, 0)            # causal, in torch >= 2.11's terms
    else:
        kwargs["is_causal"] = True
    if groups > 1:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:                                      # torch 2.10/2.11: no GQA flag; repeat k/v (a few MB)
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    cu32 = cu_seqlens.to(torch.int32)
    return varlen_attn(q, k, v, cu32, cu32, max_seqlen, max_seqlen, **kwargs)


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                     bounds: list[int], max_seqlen: int, scale: float, *, impl: str) -> torch.Tensor:
    """Causal attention within each prompt of a pack.

    q: [T, H, D]; k, v: [T, Hkv, D]; cu_seqlens: int [N + 1] on q's device; bounds: the same as a host
    list; max_seqlen: the longest prompt. returns [T, H, D] in q's dtype.
    """
    if impl == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        cu32 = cu_seqlens.to(torch.int32)
        return flash_attn_varlen_func(q, k, v, cu32, cu32, max_seqlen, max_seqlen, softmax_scale=scale, causal=True)
    if impl == "varlen":
        return varlen_attention_torch(q, k, v, cu_seqlens, max_seqlen, scale)
    if impl == "sdpa":
        return varlen_attention_sdpa(q, k, v, bounds, scale)
    if impl == "naive":
        return varlen_attention_naive(q, k, v, bounds, scale)
    if impl == "masked":
        seq_ids = torch.repeat_interleave(torch.arange(len(bounds) - 1, device=q.device),
                                          torch.tensor(bounds, device=q.device).diff())
        return varlen_attention_masked(q, k, v, seq_ids, scale)
    raise ValueError(f"unknown varlen attention implementation {impl!r}: expected one of {ATTENTION_IMPLS}")
