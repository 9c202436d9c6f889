"""Inputs of the gated delta rule for the op tests, and transformers' own torch code as a reference."""

from __future__ import annotations

import torch


def gated_delta_inputs(lengths, heads_k=2, heads_v=4, dim_k=16, dim_v=8, seed=0, decay=1.5):
    """q, k [T, Hk, Dk], v [T, Hv, Dv], g (log decay in [-decay, 0]), beta [T, Hv], cu_seqlens."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    q = torch.randn(total, heads_k, dim_k, generator=gen)
    k = torch.randn(total, heads_k, dim_k, generator=gen)
    v = torch.randn(total, heads_v, dim_v, generator=gen)
    g = -torch.rand(total, heads_v, generator=gen) * decay
    beta = torch.rand(total, heads_v, generator=gen)
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist())
    return q, k, v, g, beta, cu


def transformers_per_prompt(q, k, v, g, beta, cu) -> torch.Tensor:
    """transformers' `torch_chunk_gated_delta_rule`, one prompt at a time.

    Qwen3.5 has fewer key heads than value heads. transformers' Gated DeltaNet layer repeats q and k up
    to the value heads before this call in 5.17; in 5.24 the function does it itself. Repeating here is
    right for both (then a no-op inside), so the floor of pyproject.toml runs this too.
    """
    from transformers.models.qwen3_5.modeling_qwen3_5 import torch_chunk_gated_delta_rule

    rep = v.shape[1] // q.shape[1]
    q_rep, k_rep = q.repeat_interleave(rep, dim=1), k.repeat_interleave(rep, dim=1)
    bounds = cu.tolist()
    return torch.cat([torch_chunk_gated_delta_rule(q_rep[None, s:e], k_rep[None, s:e], v[None, s:e], g[None, s:e],
                                                   beta[None, s:e], use_qk_l2norm_in_kernel=True)[0][0]
                      for s, e in zip(bounds[:-1], bounds[1:])])
