"""The chunked gated delta rule with the in-chunk inverse done by matmuls: the CPU's fast path.

Same maths as `gated_delta_chunked` (ops/gated_delta.py, its twin), arranged for a CPU:
- The UT transform needs (I + A)^-1 for a strictly lower A per chunk and head. Instead of one
  `solve_triangular` per chunk (LAPACK's trsm, slow on thousands of small systems and badly threaded),
  the inverse is built as fla's `solve_tril` builds it on GPUs: forward substitution inside 16x16
  diagonal blocks (15 vector steps batched over every block of the pack), then doubling merges,
  [[X1, 0], [L21, X2]]^-1 = [[X1^-1, 0], [-X2^-1 L21 X1^-1, X2^-1]], 16 -> 32 -> 64 as batched matmuls.
- Chunks are laid out step-major (`StepLayout`): prompts sorted by chunk count, longest first, and the
  s-th chunks of all prompts that still have one stored side by side. Step s of the scan over chunks is
  then a contiguous slice of every operand and a prefix of the state: no gathers, no padded all-zero
  chunks, every matmul batched over (prompts x heads).
- q.k^T and k.k^T are computed once per key head and shared by the Hv / Hk value heads it serves.
- float32 inside whatever the input dtype (bf16 matmuls have no hardware path on AVX2 CPUs and run
  ~100x slower than fp32 there; the state is float32 in every implementation); output in v's dtype.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .gated_delta_inputs import check_initial_state, check_inputs

INVERSE_BLOCK = 16
CHUNK_SIZES = (16, 32, 64, 128)
CPU_CHUNK_SIZE = 64      # measured against 32 and 128 at the 4B's head sizes: bench/RESULTS.md
EXP_FLOOR = 60.0         # exp(-60) = 9e-27: below it a decay is as good as 0 next to the fp32 terms it joins


@dataclass(frozen=True)
class StepLayout:
    """Where each packed row sits once every prompt is cut into chunks laid out step-major.

    row_chunk, row_pos: [T] int64, row t's chunk and its position in the chunk: they index a head-major
        [num_chunks, H, chunk_size, D] buffer directly.
    row_slot (derived): row t's slot in the row-major chunk buffer [num_chunks * chunk_size].
    step_offsets: host list [S + 1]: the chunks of scan step s are [step_offsets[s], step_offsets[s+1]);
        they belong to the prompts of rank 0 .. (count - 1), rank = order by chunk count, longest first.
    prompt_rank: [N] int64, prompt n's rank (its row in the scan's state), to carry states in and out.
    """

    chunk_size: int
    num_chunks: int
    num_prompts: int
    row_chunk: torch.Tensor
    row_pos: torch.Tensor
    step_offsets: tuple[int, ...]
    prompt_rank: torch.Tensor

    @classmethod
    def build(cls, bounds: list[int], chunk_size: int, device: torch.device | str) -> "StepLayout":
        """bounds: cu_seqlens as a host list [0, l0, l0 + l1, ...]."""
        if chunk_size not in CHUNK_SIZES:
            raise ValueError(f"gated delta chunk size {chunk_size}: expected one of {CHUNK_SIZES}")
        starts = torch.tensor(bounds[:-1], dtype=torch.int64)
        lengths = torch.tensor(bounds, dtype=torch.int64).diff()
        if (lengths < 0).any():
            raise ValueError(f"cu_seqlens must not decrease, got {bounds}")
        chunks = (lengths + chunk_size - 1) // chunk_size
        order = torch.sort(chunks, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order))
        max_chunks = int(chunks.max()) if len(chunks) else 0
        # active[s]: how many prompts have an s-th chunk (a prefix of the rank order)
        active = (chunks[None, :] > torch.arange(max_chunks)[:, None]).sum(1)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), active.cumsum(0)])
        prompt = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        pos = torch.arange(bounds[-1]) - starts[prompt]
        chunk = offsets[pos // chunk_size] + rank[prompt]
        return cls(chunk_size, int(offsets[-1]), len(lengths), chunk.to(device), (pos % chunk_size).to(device),
                   tuple(offsets.tolist()), rank.to(device))

    @functools.cached_property
    def row_slot(self) -> torch.Tensor:
        return self.row_chunk * self.chunk_size + self.row_pos


def _diag_blocks(a: torch.Tensor, size: int) -> torch.Tensor:
    """The diagonal size x size blocks of a [..., C, C] as a view [..., C / size, size, size]."""
    n = a.shape[-1] // size
    blocks = a.unflatten(-1, (n, size)).unflatten(-3, (n, size))          # [..., n, s, n, s]
    return blocks.diagonal(dim1=-4, dim2=-2).movedim(-1, -3)             # [..., n, s, s]


def unit_lower_inverse(a: torch.Tensor) -> torch.Tensor:
    """(I + a)^-1 for a strictly lower triangular [..., C, C] (C a power of two), by matmuls only.

    Reads only the strict lower triangle of `a` (as `solve_triangular(..., unitriangular=True)`).
    """
    size = a.shape[-1]
    block = min(INVERSE_BLOCK, size)
    # Forward substitution in each diagonal block: with N = -strict_lower(block), row i of the inverse's
    # strict part is N[i, :i] + N[i, :i] @ inv_strict[:i, :i] (rows < i already final).
    inv = -_diag_blocks(a, block).tril(-1)
    for i in range(1, block):
        inv[..., i, :i] += (inv[..., i, :i, None] * inv[..., :i, :i]).sum(-2)
    inv += torch.eye(block, dtype=a.dtype, device=a.device)
    # Doubling merges: each 2b block's inverse from its two diagonal b-block inverses.
    while block < size:
        pairs = inv.unflatten(-3, (-1, 2))                                  # [..., n/2, 2, b, b]
        first, second = pairs[..., 0, :, :], pairs[..., 1, :, :]
        lower = _diag_blocks(a, 2 * block)[..., block:, :block]             # [..., n/2, b, b]
        merged = a.new_zeros((*inv.shape[:-3], inv.shape[-3] // 2, 2 * block, 2 * block))
        merged[..., :block, :block] = first
        merged[..., block:, block:] = second
        merged[..., block:, :block] = -(second @ lower @ first)
        inv, block = merged, 2 * block
    return inv.squeeze(-3)


def _l2norm_into(x: torch.Tensor, scale: float, eps: float = 1e-6) -> torch.Tensor:
    """x [NC, C, H, D] -> scale * x / sqrt(sum x^2 + eps), written head-major [NC, H, C, D] (one pass)."""
    out = torch.empty((x.shape[0], x.shape[2], x.shape[1], x.shape[3]), dtype=x.dtype, device=x.device)
    factor = torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)
    if scale != 1.0:
        factor = factor * scale
    torch.mul(x, factor, out=out.transpose(1, 2))
    return out


def gated_delta_blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                        cu_seqlens: torch.Tensor, *, scale: float | None = None, use_qk_l2norm: bool = True,
                        chunk_size: int = CPU_CHUNK_SIZE, layout: StepLayout | None = None,
                        initial_state: torch.Tensor | None = None, output_final_state: bool = False):
    """Chunked gated delta rule over all prompts of a pack, in-chunk inverse by matmuls (float32 inside).

    q, k: [T, Hk, Dk]; v: [T, Hv, Dv]; g (log decay, <= 0), beta: [T, Hv]; cu_seqlens: int [N + 1].
    `layout` (from `StepLayout.build`) may be passed so the linear-attention layers of a batch share it.
    initial_state: float32 [N, Hv, Dk, Dv] or None (zero): prompt n starts from it (a shared prefix's
    final state). returns o [T, Hv, Dv] in v's dtype, or with output_final_state (o, float32 final
    states [N, Hv, Dk, Dv]).
    """
    heads_k, heads_v = check_inputs(q, k, v, g, beta)
    out_dtype, f32 = v.dtype, torch.float32
    if layout is None:
        layout = StepLayout.build(cu_seqlens.tolist(), chunk_size, v.device)
    if not isinstance(layout, StepLayout):
        raise TypeError(f"gated_delta_blocked needs a StepLayout, got {type(layout).__name__}")
    size, nc = layout.chunk_size, layout.num_chunks
    dim_k, dim_v = q.shape[-1], v.shape[-1]
    group = heads_v // heads_k
    slots = nc * size
    scale = dim_k ** -0.5 if scale is None else scale

    def to_chunks(x: torch.Tensor) -> torch.Tensor:
        # Padding slots stay zero: g = 0 (no decay), beta = 0 (no write), k = 0, so they leave the state
        # unchanged, and their outputs are never read back.
        buf = torch.zeros((slots, *x.shape[1:]), dtype=f32, device=x.device)
        buf.index_copy_(0, layout.row_slot, x.to(f32))
        return buf.view(nc, size, *x.shape[1:])

    qc, kc = to_chunks(q), to_chunks(k)                                   # [NC, C, Hk, Dk]
    if use_qk_l2norm:
        qc, kc = _l2norm_into(qc, scale), _l2norm_into(kc, 1.0)          # [NC, Hk, C, Dk]
    else:
        qc, kc = (qc * scale).transpose(1, 2).contiguous(), kc.transpose(1, 2).contiguous()
    gc = to_chunks(g).transpose(1, 2).contiguous()                        # [NC, Hv, C]
    bc = to_chunks(beta).transpose(1, 2).contiguous()
    cum = gc.cumsum(-1)

    # Per key head, shared by its value heads: k k^T and q k^T.
    kk = kc @ kc.transpose(-1, -2)                                        # [NC, Hk, C, C]
    qk = qc @ kc.transpose(-1, -2)
    causal = torch.ones(size, size, dtype=torch.bool, device=v.device).tril()
    # exp(cum_i - cum_j) for i >= j (<= 1), 0 above the diagonal. The exponent is clamped to [-EXP_FLOOR, 0]
    # and the upper triangle zeroed after the exp: torch's vectorised exp leaves its fast path for -inf and
    # for arguments below about -87 (denormal results), and a pack of long prompts has many (measured 10x
    # slower); a decay of e^-60 instead of a smaller one moves nothing an fp32 sum can hold.
    decay = (cum[..., :, None] - cum[..., None, :]).clamp_(-EXP_FLOOR, 0.0).exp_().masked_fill_(~causal, 0.0)
    decay_by_key = decay.view(nc, heads_k, group, size, size)
    system = (kk[:, :, None] * decay_by_key).view(nc, heads_v, size, size) * bc[..., :, None]
    intra = (qk[:, :, None] * decay_by_key).view(nc, heads_v, size, size)   # lower incl. diagonal
    del kk, qk, decay, decay_by_key
    inverse = unit_lower_inverse(system)                                  # (I + strict_lower(system))^-1
    del system

    def by_value_head(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        # x [NC, Hk, C, D] repeated to the value heads and multiplied by factor [NC, Hv, C]
        return (x[:, :, None] * factor.view(nc, heads_k, group, size, 1)).view(nc, heads_v, size, x.shape[-1])

    exp_cum = cum.exp()
    # u = A (beta v) and w = A (beta e^cum k), with A the inverse: the per-row factors scale A's columns
    # ([C, C] per head) rather than v and k ([C, D], twice as big), and w takes one matmul per key head
    # over its value heads' stacked rows ([Hv/Hk * C, C] @ [C, Dk]) with no repeated copy of k.
    vc = torch.zeros((nc, heads_v, size, dim_v), dtype=f32, device=v.device)
    vc[layout.row_chunk, :, layout.row_pos] = v.to(f32)                    # scattered head-major in one pass
    u = (inverse * bc[..., None, :]) @ vc                                 # [NC, Hv, C, Dv]
    del vc
    inverse.mul_((bc * exp_cum)[..., None, :])
    w = (inverse.view(nc, heads_k, group * size, size) @ kc).view(nc, heads_v, size, dim_k)
    del inverse
    q_decayed = by_value_head(qc, exp_cum)
    k_decayed_t = by_value_head(kc, (cum[..., -1:] - cum).exp()).transpose(-1, -2)   # [NC, Hv, Dk, C], a view
    chunk_decay = exp_cum[..., -1, None, None]                           # [NC, Hv, 1, 1]
    del qc, kc

    # The scan: step s advances the `count` longest prompts by their s-th chunk. The chunks of a step
    # are contiguous and their prompts are a prefix of the state: every operand is a view.
    flat = lambda x: x.view(nc * heads_v, *x.shape[2:])                  # noqa: E731
    u, w, intra, q_decayed, k_decayed_t, chunk_decay = (flat(x) for x in (u, w, intra, q_decayed, k_decayed_t,
                                                                          chunk_decay))
    out = torch.empty((nc * heads_v, size, dim_v), dtype=f32, device=v.device)
    # The state's rows are in rank order (longest prompt first): a prompt's final state is the row it
    # leaves behind at its last step, as later steps only touch the prompts of lower rank.
    states = torch.zeros((layout.num_prompts, heads_v, dim_k, dim_v), dtype=f32, device=v.device)
    check_initial_state(initial_state, layout.num_prompts, q, v)
    if initial_state is not None:
        states.index_copy_(0, layout.prompt_rank, initial_state.to(f32))
    state = states.view(layout.num_prompts * heads_v, dim_k, dim_v)
    offsets = layout.step_offsets
    for first, last in zip(offsets[:-1], offsets[1:]):
        rows = slice(first * heads_v, last * heads_v)
        s = state[: (last - first) * heads_v]
        v_new = torch.baddbmm(u[rows], w[rows], s, alpha=-1.0)           # u - w S
        o = out[rows]
        torch.bmm(q_decayed[rows], s, out=o)
        o.baddbmm_(intra[rows], v_new)                                   # + intra v_new
        s.mul_(chunk_decay[rows]).baddbmm_(k_decayed_t[rows], v_new)     # S <- decay S + k_dec^T v_new
    out = out.view(nc, heads_v, size, dim_v)[layout.row_chunk, :, layout.row_pos].to(out_dtype)   # [T, Hv, Dv]
    if output_final_state:
        return out, states.index_select(0, layout.prompt_rank)
    return out
