"""Causal depthwise conv1d + SiLU over packed prompts, with the conv window reset at each prompt start.

Gated DeltaNet runs its q/k/v through a depthwise causal conv of width K (4 in Qwen3.5) before the
delta rule. Packed, a prompt's first K - 1 rows must not see the tail of the prompt before it:
transformers only gets that right with causal-conv1d's `seq_idx`, which it never builds (DESIGN §3).

out[t, c] = silu( sum_{s < K, s <= pos[t]} w[c, K - 1 - s] * x[t - s, c] )

`pos[t]` is row t's position inside its own prompt (the rotary position ids, which we build anyway),
so "tap s reaches back into this prompt" is simply `pos[t] >= s`.

Implementations, all computing in float32; as transformers' `causal_conv1d_fn` (a conv in the model
dtype, then SiLU in that dtype) the conv sum is rounded to the model dtype before the SiLU:
- `causal_conv1d_varlen_naive`: one `F.conv1d` per prompt, exactly as transformers does it (twin).
- `causal_conv1d_varlen_torch`: K shifted multiply-adds over the whole pack, prompt-start rows redone
  (CPU, any device).
- `causal_conv1d_varlen_triton`: one Triton kernel (any CUDA GPU Triton supports; CPU under
  TRITON_INTERPRET=1 for the tests).
- `causal_conv1d_varlen_cuda`: our CUDA kernel (`csrc/causal_conv1d_varlen.cu`), built lazily.
`causal_conv1d_varlen` runs the one the KernelSet (ops/kernels.py) picked: Triton on CUDA when importable,
else torch (the CUDA kernel on request, JUDGE_CORE_CONV=cuda; it rounds once, after the SiLU).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F

# Chosen once per (device, dtype) by ops/kernels.py (KernelSet.conv), never here.
CONV_IMPLS = ("triton", "cuda", "torch")


def _check(x: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor) -> None:
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"causal conv: expected x [T, C] and weight [C, K], got x {tuple(x.shape)} "
                         f"and weight {tuple(weight.shape)}")
    if positions.shape != (x.shape[0],):
        raise ValueError(f"causal conv: positions must be [T] = [{x.shape[0]}], got {tuple(positions.shape)}")
    if x.stride(1) != 1:
        raise ValueError(f"causal conv: x must be contiguous along channels, got strides {x.stride()}")


def causal_conv1d_varlen_naive(x: torch.Tensor, weight: torch.Tensor, cu_seqlens: torch.Tensor,
                               activation: str | None = "silu") -> torch.Tensor:
    """Reference twin: one zero-padded `F.conv1d` per prompt (transformers' `causal_conv1d_fn`).

    x: [T, C]; weight: [C, K]; cu_seqlens: int [N + 1]. returns [T, C] in x's dtype.
    """
    kernel = weight.shape[1]
    bounds = cu_seqlens.tolist()
    out = torch.empty_like(x)
    for start, end in zip(bounds[:-1], bounds[1:]):
        seq = x[start:end].T.float().unsqueeze(0)                       # [1, C, L]
        y = F.conv1d(seq, weight.float().unsqueeze(1), padding=kernel - 1, groups=x.shape[1])
        y = y[0, :, : end - start].T.to(x.dtype).float()
        out[start:end] = (F.silu(y) if activation == "silu" else y).to(x.dtype)
    return out


def causal_conv1d_varlen_torch(x: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor,
                               activation: str | None = "silu") -> torch.Tensor:
    """K shifted multiply-adds over the whole pack; the few rows whose taps would cross a prompt start
    (position < K - 1) are then recomputed from their own prompt's rows only.

    x: [T, C]; weight: [C, K]; positions: int [T] (row's position within its prompt). returns [T, C].
    On the CPU every pass over [T, C] costs as much as the arithmetic, so the pack takes one
    multiply-add pass per tap into one float32 buffer and an in-place SiLU, with no masks over all rows.
    """
    _check(x, weight, positions)
    kernel = weight.shape[1]
    xf, wf = x.float(), weight.float()
    out = xf * wf[:, kernel - 1]
    for shift in range(1, min(kernel, x.shape[0])):
        out[shift:].addcmul_(xf[:-shift], wf[:, kernel - 1 - shift])      # row t - shift feeding row t
    # The rows near a prompt start took taps from the prompt before it (or none before row `shift`):
    # recomputed with a tap only where it reaches back into the row's own prompt, in the same order.
    early = (positions < kernel - 1).nonzero().squeeze(1)
    if early.numel():
        fixed = xf[early] * wf[:, kernel - 1]
        for shift in range(1, kernel):
            ok = (positions[early] >= shift) & (early >= shift)
            tap = xf[(early - shift).clamp_min(0)] * wf[:, kernel - 1 - shift]
            fixed += tap * ok.unsqueeze(1)
        out[early] = fixed
    if activation == "silu":
        if x.dtype != torch.float32:        # the conv sum rounded to the model dtype before the SiLU
            out.copy_(out.to(x.dtype))
        F.silu(out, inplace=True)
    return out.to(x.dtype)


@functools.cache
def _triton_kernel():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["T"])   # T changes per batch: no re-JIT when T % 16 != 0 (triton_kernels.py)
    def conv_kernel(x_ptr, w_ptr, pos_ptr, out_ptr, T, C, stride_x, stride_out,
                    K: tl.constexpr, SILU: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        row_ok = rows < T
        col_ok = cols < C
        pos = tl.load(pos_ptr + rows, mask=row_ok, other=0)
        acc = tl.full((BLOCK_T, BLOCK_C), 0.0, tl.float32)  # tl.zeros is @jit: not interpretable late
        for shift in tl.static_range(K):
            w = tl.load(w_ptr + cols * K + (K - 1 - shift), mask=col_ok, other=0.0).to(tl.float32)
            ok = (row_ok & (pos >= shift))[:, None] & col_ok[None, :]
            src = (rows - shift).to(tl.int64)
            xv = tl.load(x_ptr + src[:, None] * stride_x + cols[None, :], mask=ok, other=0.0).to(tl.float32)
            acc += xv * w[None, :]
        if SILU:  # rounded to the output dtype first, as transformers' conv-then-SiLU
            acc = acc.to(out_ptr.dtype.element_ty).to(tl.float32)
            # written out: tl.sigmoid is itself @jit and would not run under a late TRITON_INTERPRET
            acc = acc / (1.0 + tl.exp(-acc))
        dst = out_ptr + rows.to(tl.int64)[:, None] * stride_out + cols[None, :]
        tl.store(dst, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])

    return conv_kernel


def causal_conv1d_varlen_triton(x: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor,
                                activation: str | None = "silu") -> torch.Tensor:
    """Triton kernel: one program per [BLOCK_T, BLOCK_C] tile; x may be a row-strided view (a slice of
    a fused projection's output), so no copy is made. Shapes as `causal_conv1d_varlen_torch`."""
    _check(x, weight, positions)
    import triton

    tokens, channels = x.shape
    out = torch.empty((tokens, channels), dtype=x.dtype, device=x.device)
    if tokens == 0:
        return out
    block_t, block_c = 32, 128
    grid = (triton.cdiv(tokens, block_t), triton.cdiv(channels, block_c))
    _triton_kernel()[grid](x, weight.contiguous(), positions.to(torch.int32).contiguous(), out,
                           tokens, channels, x.stride(0), out.stride(0), K=weight.shape[1],
                           SILU=activation == "silu", BLOCK_T=block_t, BLOCK_C=block_c)
    return out


CSRC = Path(__file__).resolve().parents[2] / "csrc"


@functools.cache
def _cuda_extension():
    """Build (once, cached by torch in ~/.cache/torch_extensions) and load our CUDA kernel."""
    from torch.utils.cpp_extension import load

    return load(name="judge_core_causal_conv1d_varlen",
                sources=[str(CSRC / "causal_conv1d_varlen_binding.cpp"), str(CSRC / "causal_conv1d_varlen.cu")],
                extra_cuda_cflags=["-O3"], verbose=False)


def causal_conv1d_varlen_cuda(x: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor,
                              activation: str | None = "silu") -> torch.Tensor:
    """Our CUDA kernel (csrc/causal_conv1d_varlen.cu). Shapes as `causal_conv1d_varlen_torch`."""
    _check(x, weight, positions)
    if not x.is_cuda:
        raise ValueError(f"causal conv: the CUDA kernel needs CUDA tensors, got x on {x.device}")
    return _cuda_extension().causal_conv1d_varlen(x, weight.contiguous(), positions.to(torch.int32).contiguous(),
                                                  activation == "silu")


def causal_conv1d_varlen(x: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor,
                         activation: str | None = "silu", *, impl: str) -> torch.Tensor:
    """Causal depthwise conv + SiLU, reset at each prompt start.

    x: [T, C] (channels contiguous; rows may be strided); weight: [C, K]; positions: int [T], each
    row's position within its prompt. returns [T, C] in x's dtype.
    """
    if impl == "triton":
        return causal_conv1d_varlen_triton(x, weight, positions, activation)
    if impl == "cuda":
        return causal_conv1d_varlen_cuda(x, weight, positions, activation)
    if impl == "torch":
        return causal_conv1d_varlen_torch(x, weight, positions, activation)
    raise ValueError(f"unknown causal conv implementation {impl!r}: expected one of {CONV_IMPLS}")
