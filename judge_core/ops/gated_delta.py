"""The gated delta rule (Gated DeltaNet's token mixer) over packed prompts, state reset per prompt.

Per value head, with a state S [Dk, Dv] that starts at zero at every prompt start:
    S_t = exp(g_t) S_{t-1};   S_t = S_t + k_t (beta_t (v_t - S_t^T k_t))^T;   o_t = S_t^T (scale q_t)
q and k are L2-normalised first (Qwen3.5 does it inside the kernel call); each q/k head serves
Hv / Hk consecutive value heads (transformers' `repeat_interleave`).

Implementations:
- `gated_delta_naive`: the recurrence above, token by token, prompt by prompt, float32 (the twin).
- `gated_delta_chunked`: the chunked (WY / UT-transform) form of transformers'
  `torch_chunk_gated_delta_rule`, run on all prompts at once: every prompt is cut into chunks of 64
  rows, the intra-chunk work is one batched solve over all chunks of the pack, and the scan over
  chunks steps all prompts together (a prompt that has run out of chunks steps through an all-zero
  chunk, which leaves its state unchanged). float32 inside. GPUs without fla (and fp32 on GPUs), and
  the twin the blocked path is tested against.
- `gated_delta_blocked` (ops/gated_delta_blocked.py): the same chunked form with the in-chunk inverse
  built by matmuls and the chunks laid out step-major: the CPU's default.
- fla's `chunk_gated_delta_rule(..., cu_seqlens=...)` on CUDA in bf16/fp16 when flash-linear-attention
  is importable (never imported on the CPU: transformers would pick it up by import alone, DESIGN §3);
  the model gives it q/k already L2-normalised (ops/qk_norm.py) with use_qk_l2norm=False. Not in fp32:
  fla's dots run in TF32 there (see ops/kernels.py).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch

from .gated_delta_blocked import StepLayout, gated_delta_blocked
from .gated_delta_inputs import check_initial_state, check_inputs
# Chosen once per (device, dtype) by ops/kernels.py (KernelSet.gated_delta), never here.
GATED_DELTA_IMPLS = ("fla", "blocked", "torch")


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum x^2 + eps) over the last dim, as fla and transformers compute it."""
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


def _prepare(q, k, v, g, beta, scale, use_qk_l2norm):
    """float32 copies, q/k normalised, scaled and repeated to the value heads: [T, Hv, D] each."""
    heads_k, heads_v = check_inputs(q, k, v, g, beta)
    q, k = q.float(), k.float()
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q = q * scale
    if heads_v != heads_k:
        q = q.repeat_interleave(heads_v // heads_k, dim=1)
        k = k.repeat_interleave(heads_v // heads_k, dim=1)
    return q, k, v.float(), g.float(), beta.float()


def gated_delta_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                      cu_seqlens: torch.Tensor, *, scale: float | None = None,
                      use_qk_l2norm: bool = True, initial_state: torch.Tensor | None = None,
                      output_final_state: bool = False):
    """Reference twin: the recurrence, one token at a time, each prompt from a zero state (or from
    initial_state[i]: a shared prefix's final state).

    q, k: [T, Hk, Dk]; v: [T, Hv, Dv]; g (log decay, <= 0), beta: [T, Hv]; cu_seqlens: int [N + 1];
    initial_state: float32 [N, Hv, Dk, Dv] or None. returns o [T, Hv, Dv] in v's dtype, and with
    output_final_state the float32 states after each prompt's last row, (o, [N, Hv, Dk, Dv]).
    """
    out_dtype = v.dtype
    check_initial_state(initial_state, len(cu_seqlens) - 1, q, v)
    q, k, v, g, beta = _prepare(q, k, v, g, beta, scale, use_qk_l2norm)
    heads_v, dim_k, dim_v = v.shape[1], q.shape[2], v.shape[2]
    out = torch.zeros_like(v)
    bounds = cu_seqlens.tolist()
    finals = []
    for n, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        state = torch.zeros(heads_v, dim_k, dim_v, dtype=torch.float32, device=v.device)
        if initial_state is not None:
            state = initial_state[n].float().clone()
        for t in range(start, end):
            state = state * g[t].exp()[:, None, None]
            predicted = torch.einsum("hkv,hk->hv", state, k[t])
            delta = (v[t] - predicted) * beta[t][:, None]
            state = state + k[t][:, :, None] * delta[:, None, :]
            out[t] = torch.einsum("hkv,hk->hv", state, q[t])
        finals.append(state)
    if output_final_state:
        return out.to(out_dtype), torch.stack(finals)
    return out.to(out_dtype)


@dataclass(frozen=True)
class ChunkLayout:
    """Where each packed row sits once every prompt is cut into whole chunks.

    row_slot: [T] int64, row t's slot in the chunk-aligned buffer [num_chunks * chunk_size].
    chunk_table: [N, max_chunks] int64, prompt i's j-th chunk, or `num_chunks` (an all-zero chunk)
        once the prompt has run out.
    """

    chunk_size: int
    num_chunks: int
    max_chunks: int
    row_slot: torch.Tensor
    chunk_table: torch.Tensor

    @classmethod
    def build(cls, bounds: list[int], chunk_size: int, device: torch.device | str) -> "ChunkLayout":
        """bounds: cu_seqlens as a host list [0, l0, l0 + l1, ...]."""
        lengths = [end - start for start, end in zip(bounds[:-1], bounds[1:])]
        chunks = [-(-n // chunk_size) for n in lengths]
        first_chunk = [0]
        for c in chunks[:-1]:
            first_chunk.append(first_chunk[-1] + c)
        num_chunks, max_chunks = sum(chunks), max(chunks, default=0)
        # Built on the host: a few list ops per batch, then one copy each.
        row_slot = torch.cat([torch.arange(n) + first * chunk_size for n, first in zip(lengths, first_chunk)])
        steps = torch.arange(max_chunks)
        table = torch.tensor(first_chunk)[:, None] + steps[None, :]
        table = torch.where(steps[None, :] < torch.tensor(chunks)[:, None], table, num_chunks)
        device = torch.device(device)
        if device.type == "cuda":  # pinned + non-blocking: a pageable copy would wait for the queued work
            row_slot, table = row_slot.pin_memory(), table.pin_memory()
        return cls(chunk_size, num_chunks, max_chunks, row_slot.to(device, non_blocking=True),
                   table.to(device, non_blocking=True))


def gated_delta_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                        cu_seqlens: torch.Tensor, *, scale: float | None = None, use_qk_l2norm: bool = True,
                        chunk_size: int = 64, layout: ChunkLayout | None = None,
                        initial_state: torch.Tensor | None = None, output_final_state: bool = False):
    """Chunked gated delta rule over all prompts of a pack at once (float32 inside).

    Shapes, initial_state and output_final_state as `gated_delta_naive`. `layout` (from `ChunkLayout.build`) may be passed in so that the
    24 linear-attention layers of one batch share it.
    """
    out_dtype = v.dtype
    check_initial_state(initial_state, len(cu_seqlens) - 1, q, v)
    q, k, v, g, beta = _prepare(q, k, v, g, beta, scale, use_qk_l2norm)
    if layout is None:
        layout = ChunkLayout.build(cu_seqlens.tolist(), chunk_size, v.device)
    size, nc = layout.chunk_size, layout.num_chunks
    heads, dim_k, dim_v = v.shape[1], q.shape[2], v.shape[2]

    def to_chunks(x: torch.Tensor) -> torch.Tensor:
        # [T, Hv, ...] -> [NC + 1, Hv, C, ...]; padding rows and the extra all-zero chunk hold zeros,
        # i.e. g = 0 (no decay), beta = 0 (no write), k = 0: they leave the state unchanged.
        buf = x.new_zeros(((nc + 1) * size, *x.shape[1:]))
        buf[layout.row_slot] = x
        return buf.view(nc + 1, size, *x.shape[1:]).transpose(1, 2)

    q, k, v, g, beta = (to_chunks(x) for x in (q, k, v, g, beta))   # [NC+1, H, C, D] / [NC+1, H, C]
    k_beta, v_beta = k * beta[..., None], v * beta[..., None]
    cum = g.cumsum(-1)                                                 # log decay from chunk start
    causal = torch.ones(size, size, dtype=torch.bool, device=v.device).tril()
    pair_decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf")).exp()

    # UT transform: (I + strict_lower(beta K K^T * decay)) [u, w] = [beta V, beta K exp(cum)]
    # (solve_triangular with unitriangular=True reads only the strict lower triangle)
    system = (k_beta @ k.transpose(-1, -2)) * pair_decay
    # One solve for both right-hand sides (same triangular system).
    rhs = torch.cat([v_beta, k_beta * cum.exp()[..., None]], dim=-1)
    u, w = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True).split([dim_v, dim_k], dim=-1)
    intra = (q @ k.transpose(-1, -2)) * pair_decay                   # lower triangle incl. diagonal
    q_decayed = q * cum.exp()[..., None]
    k_decayed = k * (cum[..., -1:] - cum).exp()[..., None]
    chunk_decay = cum[..., -1].exp()[..., None, None]                  # [NC+1, H, 1, 1]

    # The scan: step s advances every prompt by its s-th chunk. Gather each operand once into
    # [steps, N * H, ...] so that the loop body is only batched matmuls on views.
    steps = layout.chunk_table.T                                       # [S, N]
    num_steps, num_prompts = steps.shape
    rows = num_prompts * heads                                         # one (prompt, head) state per row

    def gather(x: torch.Tensor) -> torch.Tensor:                     # [NC+1, H, a, b] -> [S, N*H, a, b]
        return x[steps].reshape(num_steps, rows, *x.shape[2:])

    u, w, intra, q_decayed, k_decayed = (gather(x) for x in (u, w, intra, q_decayed, k_decayed))
    k_decayed_t = k_decayed.transpose(-1, -2)
    chunk_decay = gather(chunk_decay)                                  # [S, N*H, 1, 1]
    out_steps = torch.empty_like(u)
    state = v.new_zeros((rows, dim_k, dim_v)) if initial_state is None else \
        initial_state.float().reshape(rows, dim_k, dim_v).clone()
    # Fused multiply-adds (baddbmm) keep the per-step launch count low: this loop is sequential.
    for step in range(num_steps):
        v_new = torch.baddbmm(u[step], w[step], state, alpha=-1.0)    # u - w S
        torch.bmm(q_decayed[step], state, out=out_steps[step])
        out_steps[step].baddbmm_(intra[step], v_new)                  # + intra v_new
        state = torch.baddbmm(state * chunk_decay[step], k_decayed_t[step], v_new)
    out_steps = out_steps.reshape(num_steps, num_prompts, heads, size, dim_v)
    out = torch.zeros_like(v)
    out[steps] = out_steps        # the all-zero chunk's slot receives several writes: it is discarded
    out = out.transpose(1, 2).reshape((nc + 1) * size, heads, dim_v)[layout.row_slot]
    if output_final_state:   # a prompt past its last chunk stepped through zero chunks: state unchanged
        return out.to(out_dtype), state.reshape(num_prompts, heads, dim_k, dim_v)
    return out.to(out_dtype)


@functools.cache
def _fla_params() -> frozenset:
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    return frozenset(inspect.signature(chunk_gated_delta_rule).parameters)


def gated_delta_fla(q, k, v, g, beta, cu_seqlens, *, scale=None, use_qk_l2norm=True, initial_state=None,
                    output_final_state=False, cu_seqlens_cpu=None):
    """flash-linear-attention's chunked kernel over cu_seqlens. Shapes as `gated_delta_naive` (fla takes
    per-sequence initial states [N, H, K, V] with cu_seqlens). cu_seqlens_cpu: the same bounds on the
    host, which fla (0.5+) reads instead of copying cu_seqlens back from the device (a sync per call)."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    heads_k, heads_v = q.shape[1], v.shape[1]
    if heads_v != heads_k:  # older fla releases need q/k heads == v heads; repeating is always right
        q = q.repeat_interleave(heads_v // heads_k, dim=1)
        k = k.repeat_interleave(heads_v // heads_k, dim=1)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if initial_state is not None:
        initial_state = initial_state.float()
    extra = {"cu_seqlens_cpu": cu_seqlens_cpu} if cu_seqlens_cpu is not None and "cu_seqlens_cpu" in _fla_params() else {}
    out, final = chunk_gated_delta_rule(q[None], k[None], v[None], g=g[None].float(), beta=beta[None], scale=scale,
                                        initial_state=initial_state, output_final_state=output_final_state,
                                        cu_seqlens=cu_seqlens.long(), use_qk_l2norm_in_kernel=use_qk_l2norm, **extra)
    return (out[0], final) if output_final_state else out[0]


def gated_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                     cu_seqlens: torch.Tensor, *, scale: float | None = None, use_qk_l2norm: bool = True,
                     layout: ChunkLayout | StepLayout | None = None, impl: str,
                     initial_state: torch.Tensor | None = None, output_final_state: bool = False,
                     cu_seqlens_cpu: torch.Tensor | None = None):
    """The gated delta rule over packed prompts: fla on CUDA when installed, the blocked torch path on
    the CPU, else our chunked torch.

    q, k: [T, Hk, Dk]; v: [T, Hv, Dv]; g, beta: [T, Hv]; cu_seqlens: int [N + 1] on q's device;
    layout: a `StepLayout` for impl "blocked", a `ChunkLayout` for "torch" (built here if None);
    initial_state: float32 [N, Hv, Dk, Dv] or None (zero). returns [T, Hv, Dv] in v's dtype, or with
    output_final_state (o, float32 final states [N, Hv, Dk, Dv]); cu_seqlens_cpu: the bounds on the host
    (fla only).
    """
    if impl == "fla":
        return gated_delta_fla(q, k, v, g, beta, cu_seqlens, scale=scale, use_qk_l2norm=use_qk_l2norm,
                               initial_state=initial_state, output_final_state=output_final_state,
                               cu_seqlens_cpu=cu_seqlens_cpu)
    if impl == "blocked":
        return gated_delta_blocked(q, k, v, g, beta, cu_seqlens, scale=scale, use_qk_l2norm=use_qk_l2norm,
                                   layout=layout, initial_state=initial_state,
                                   output_final_state=output_final_state)
    if impl == "torch":
        return gated_delta_chunked(q, k, v, g, beta, cu_seqlens, scale=scale, use_qk_l2norm=use_qk_l2norm,
                                   layout=layout, initial_state=initial_state,
                                   output_final_state=output_final_state)
    raise ValueError(f"unknown gated delta implementation {impl!r}: expected one of {GATED_DELTA_IMPLS}")
