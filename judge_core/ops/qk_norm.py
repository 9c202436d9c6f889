"""Gated DeltaNet's q/k: split from the conv output and L2-normalised per head, ahead of fla.

fla's `chunk_gated_delta_rule(..., use_qk_l2norm_in_kernel=True)` runs its own `l2norm_fwd_kernel`,
whose autotune key holds NB = ceil(rows / 65536): every new token-count bucket re-tunes ~20 configs
(~11 s on an H100; fla PR #1247). We normalise here instead (as vLLM does) and call fla with
`use_qk_l2norm_in_kernel=False`; fla then applies only `scale` (inside its kernels, as before).

Semantics are fla's l2norm_fwd: y = x / sqrt(sum(x^2) + 1e-6) over the head dim, computed in float32
and stored in the input dtype (fla rounds there too).

- `qk_l2norm_torch`: the twin (float32 torch ops).
- `qk_l2norm_triton`: one launch for q and k, one fixed config (no autotune), reading the row-strided
  conv output in place and writing q and k contiguous.
"""

from __future__ import annotations

import torch

QK_NORM_IMPLS = ("triton", "torch")
EPS = 1e-6


def _check(qkv: torch.Tensor, key_dim: int, head_k_dim: int) -> None:
    if qkv.ndim != 2 or qkv.shape[1] < 2 * key_dim or key_dim % head_k_dim:
        raise ValueError(f"qk norm: expected qkv [T, >= 2 * key_dim] with key_dim ({key_dim}) a multiple of "
                         f"head_k_dim ({head_k_dim}), got qkv {tuple(qkv.shape)}")
    if qkv.stride(1) != 1:
        raise ValueError(f"qk norm: qkv must be contiguous along channels, got strides {qkv.stride()}")


def qk_split(qkv: torch.Tensor, key_dim: int, head_k_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [T, Hk, Dk] views of qkv's first 2 * key_dim columns (no norm)."""
    tokens = qkv.shape[0]
    q, k = qkv[:, :key_dim], qkv[:, key_dim:2 * key_dim]
    return q.reshape(tokens, -1, head_k_dim), k.reshape(tokens, -1, head_k_dim)


def qk_l2norm_torch(qkv: torch.Tensor, key_dim: int, head_k_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin: q, k [T, Hk, Dk], each head L2-normalised in float32, in qkv's dtype."""
    _check(qkv, key_dim, head_k_dim)
    out = []
    for x in qk_split(qkv, key_dim, head_k_dim):
        xf = x.float()
        out.append((xf / torch.sqrt((xf * xf).sum(-1, keepdim=True) + EPS)).to(qkv.dtype))
    return out[0], out[1]




def qk_l2norm_triton(qkv: torch.Tensor, key_dim: int, head_k_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton: shapes as `qk_l2norm_torch`; q and k are contiguous halves of one buffer."""
    _check(qkv, key_dim, head_k_dim)
    import triton

    from . import triton_kernels

    tokens, heads = qkv.shape[0], key_dim // head_k_dim
    out = torch.empty((2, tokens, heads, head_k_dim), dtype=qkv.dtype, device=qkv.device)
    if tokens:
        block_d = triton.next_power_of_2(head_k_dim)
        block_t = max(1, min(32, 4096 // block_d))   # ~16 KB of float32 per program, any head size
        grid = (triton.cdiv(tokens, block_t), 2 * heads)
        triton_kernels.qk_l2norm_kernel[grid](qkv, out, tokens, qkv.stride(0), EPS, HEADS2=2 * heads, D=head_k_dim,
                               BLOCK_D=block_d, BLOCK_T=block_t)
    return out[0], out[1]


def qk_l2norm(qkv: torch.Tensor, key_dim: int, head_k_dim: int, impl: str = "torch"):
    """q, k [T, Hk, Dk] from the conv output qkv [T, 2 key_dim + value_dim], each head L2-normalised."""
    if impl == "triton":
        return qk_l2norm_triton(qkv, key_dim, head_k_dim)
    if impl == "torch":
        return qk_l2norm_torch(qkv, key_dim, head_k_dim)
    raise ValueError(f"unknown qk norm implementation {impl!r}: expected one of {QK_NORM_IMPLS}")
