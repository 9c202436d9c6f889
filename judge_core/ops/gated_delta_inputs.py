"""The gated delta rule's inputs, checked once for every implementation (errors name the shapes)."""

from __future__ import annotations


def check_inputs(q, k, v, g, beta) -> tuple[int, int]:
    """Shapes of the gated delta rule's inputs checked, each error naming them: (key heads, value heads)."""
    if q.shape != k.shape or q.ndim != 3 or v.ndim != 3 or q.shape[0] != v.shape[0]:
        raise ValueError(f"gated delta: expected q, k [T, Hk, Dk] and v [T, Hv, Dv], got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    heads_k, heads_v = q.shape[1], v.shape[1]
    if heads_v % heads_k:
        raise ValueError(f"gated delta: value heads ({heads_v}) must be a multiple of key heads ({heads_k})")
    if g.shape != v.shape[:2] or beta.shape != v.shape[:2]:
        raise ValueError(f"gated delta: g and beta must be [T, Hv] = {tuple(v.shape[:2])}, got g {tuple(g.shape)}, "
                         f"beta {tuple(beta.shape)}")
    return heads_k, heads_v


def check_initial_state(initial_state, num_prompts: int, q, v) -> None:
    """A per-prompt initial state must be [N, Hv, Dk, Dv]: a wrong one would broadcast or reshape silently."""
    want = (num_prompts, v.shape[1], q.shape[2], v.shape[2])
    if initial_state is not None and tuple(initial_state.shape) != want:
        raise ValueError(f"gated delta: initial_state has shape {tuple(initial_state.shape)}, expected {want} "
                         "(prompts, value heads, key dim, value dim)")
