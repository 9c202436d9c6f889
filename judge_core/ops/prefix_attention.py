"""Causal attention for a forked batch: a segment's queries attend to its ancestors' rows and its own.

With shared prefixes (judge_core/prefix.py, models/batch.py), a suffix segment's queries are its own
rows only, while its keys are the rows of every ancestor segment (root first) and then its own: query
lengths differ from key lengths, and the causal mask is aligned bottom-right (query j of a segment of L
rows sees the first S - L + j + 1 of its S keys). The keys are gathered once per layer into one stream
(`key_rows`, bounds `cu_keys`); K/V are small next to the projections (kv heads x head_dim per row).

Implementations (the KernelSet's attention choice picks the route; any other name takes SDPA):
- `prefix_attention_naive`: explicit float32 softmax per segment (the twin).
- `prefix_attention_sdpa`: one SDPA call per segment with a bottom-right causal mask (CPU, and GPUs
  without flash-attn). On the CPU torch's kernel does not skip the masked blocks of a bottom-right mask
  (it costs L x S), while a plain causal call over S queries costs S^2 / 2 and gives the same numbers for
  the last L queries (zero queries padded in front): the cheaper of the two runs there.
- flash-attn's `flash_attn_varlen_func` with cu_seqlens_q != cu_seqlens_k (causal is bottom-right
  aligned since flash-attn 2.1): one launch per layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from .attention import sdpa_has_gqa


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_bounds: list[int], key_bounds: list[int]) -> int:
    if q.ndim != 3 or k.ndim != 3 or k.shape != v.shape or q.shape[2] != k.shape[2] or q.shape[1] % k.shape[1]:
        raise ValueError(f"prefix attention: expected q [T, H, D], k and v [T_k, Hkv, D] with H a multiple of "
                         f"Hkv, got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if len(q_bounds) != len(key_bounds) or q_bounds[-1] != q.shape[0] or key_bounds[-1] != k.shape[0]:
        raise ValueError(f"prefix attention: {len(q_bounds) - 1} query segments over {q.shape[0]} rows vs "
                         f"{len(key_bounds) - 1} key segments over {k.shape[0]} rows")
    for s, (ql, kl) in enumerate(zip(_lengths(q_bounds), _lengths(key_bounds))):
        if ql > kl:
            raise ValueError(f"prefix attention: segment {s} has {ql} queries but only {kl} keys")
    return q.shape[1] // k.shape[1]


def _lengths(bounds: list[int]) -> list[int]:
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def prefix_attention_naive(q, k, v, q_bounds: list[int], key_bounds: list[int], scale: float) -> torch.Tensor:
    """Reference twin. q [T, H, D]; k, v [T_k, Hkv, D] (the gathered key stream); q_bounds / key_bounds:
    host lists of segment bounds in each. -> [T, H, D] in q's dtype."""
    groups = _check(q, k, v, q_bounds, key_bounds)
    out = torch.empty_like(q)
    for qs, qe, ks, ke in zip(q_bounds[:-1], q_bounds[1:], key_bounds[:-1], key_bounds[1:]):
        queries, keys = qe - qs, ke - ks
        qh = q[qs:qe].float().transpose(0, 1)                                        # [H, L, D]
        kh = k[ks:ke].float().repeat_interleave(groups, dim=1).transpose(0, 1)       # [H, S, D]
        vh = v[ks:ke].float().repeat_interleave(groups, dim=1).transpose(0, 1)
        scores = (qh @ kh.transpose(-1, -2)) * scale
        # query j sits at key position (S - L) + j: it sees keys up to there
        future = torch.ones(queries, keys, dtype=torch.bool, device=q.device).triu(keys - queries + 1)
        probs = scores.masked_fill(future, float("-inf")).softmax(-1)
        out[qs:qe] = (probs @ vh).transpose(0, 1).to(q.dtype)
    return out


def prefix_attention_sdpa(q, k, v, q_bounds: list[int], key_bounds: list[int], scale: float) -> torch.Tensor:
    """One SDPA call per segment, causal aligned bottom-right. Shapes as `prefix_attention_naive`."""
    groups = _check(q, k, v, q_bounds, key_bounds)
    cpu = q.device.type == "cpu"
    # enable_gqa on the CPU, repeated k/v elsewhere: as `varlen_attention_sdpa` (ops/attention.py)
    gqa = {"enable_gqa": True} if groups > 1 and cpu and sdpa_has_gqa() else {}
    out = torch.empty_like(q)
    for qs, qe, ks, ke in zip(q_bounds[:-1], q_bounds[1:], key_bounds[:-1], key_bounds[1:]):
        queries, keys = qe - qs, ke - ks
        qh = q[qs:qe].transpose(0, 1)[None]                                           # [1, H, L, D]
        kh, vh = (x[ks:ke] if gqa else x[ks:ke].repeat_interleave(groups, dim=1) for x in (k, v))
        kh, vh = kh.transpose(0, 1)[None], vh.transpose(0, 1)[None]
        if queries == keys:  # a root segment: plain causal
            y = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, scale=scale, **gqa)
        elif cpu and keys < 2 * queries:  # S^2 / 2 < L x S: causal over S queries, the first S - L zero
            padded = qh.new_zeros((1, qh.shape[1], keys, qh.shape[3]))
            padded[:, :, keys - queries:] = qh
            y = F.scaled_dot_product_attention(padded, kh, vh, is_causal=True, scale=scale, **gqa)[:, :, keys - queries:]
        else:  # torch's lower-right causal bias: no mask tensor where a backend supports the offset
            y = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=causal_lower_right(queries, keys), scale=scale,
                                               **gqa)
        out[qs:qe] = y[0].transpose(0, 1)
    return out


def prefix_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, forks, q_bounds: list[int],
                     cu_seqlens: torch.Tensor, max_seqlen: int, scale: float, impl: str) -> torch.Tensor:
    """Attention of every segment of a forked batch in one call.

    q: [T, H, D]; k, v: [T, Hkv, D] (the batch's rows); forks: the batch's `Forks` (key_rows, cu_keys,
    key_bounds, max_keys); q_bounds / cu_seqlens / max_seqlen: the segments' bounds (host, device) and
    longest segment; impl: the KernelSet's attention choice. returns [T, H, D] in q's dtype.
    """
    keys, values = k[forks.key_rows], v[forks.key_rows]
    if impl == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(q, keys, values, cu_seqlens.to(torch.int32), forks.cu_keys.to(torch.int32),
                                      max_seqlen, forks.max_keys, softmax_scale=scale, causal=True)
    if impl == "naive":
        return prefix_attention_naive(q, keys, values, q_bounds, forks.key_bounds, scale)
    return prefix_attention_sdpa(q, keys, values, q_bounds, forks.key_bounds, scale)
