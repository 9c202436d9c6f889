"""Triton kernels for the two fattest elementwise ops of a layer; their twins are in models/fused.py.

- `silu_mul`: SwiGLU, silu(gate) * up, reading gate and up where the fused gate_up GEMM wrote them
  ([T, 2I] output, two row-strided views) and writing [T, I]: 6.7% of the warm GPU time on an H100
  (1.0 ms a call at 32k x 9216, memory-bound), so one read of each input and one write is the floor.
- `gated_rms_norm`: Gated DeltaNet's output norm x / rms(x) * w * silu(z) per head, reading z in place
  from the in_proj output and writing [T, H * D] ready for out_proj (the reshape is free).

Both round where their eager twins (transformers' order) round, so bf16 results agree with the twin to
within the last bit of exp. One fixed launch config each (no autotune: nothing tunes after warm-up).
CUDA only in the model (the KernelSet picks them); the tests run them on CPU under TRITON_INTERPRET=1.
Written without tl.sigmoid / tl.zeros (themselves @jit, so not interpretable once triton is imported).
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def silu_mul_kernel(gate_ptr, up_ptr, out_ptr, I, stride_gate, stride_up, stride_out, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        ok = cols < I
        g = tl.load(gate_ptr + row * stride_gate + cols, mask=ok, other=0.0).to(tl.float32)
        u = tl.load(up_ptr + row * stride_up + cols, mask=ok, other=0.0).to(tl.float32)
        dtype = out_ptr.dtype.element_ty
        s = (g / (1.0 + tl.exp(-g))).to(dtype).to(tl.float32)       # silu(gate) rounds, as in eager
        tl.store(out_ptr + row * stride_out + cols, (s * u).to(dtype), mask=ok)

    @triton.jit
    def gated_rms_norm_kernel(x_ptr, z_ptr, w_ptr, out_ptr, R, H, sx_t, sx_h, sz_t, sz_h, eps,
                              D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
        # row r = (token t, head h); out is [T, H, D] contiguous = [T, H * D]
        r = (tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)).to(tl.int64)
        t, h = r // H, r % H
        cols = tl.arange(0, BLOCK_D)
        ok = (r < R)[:, None] & (cols < D)[None, :]
        x = tl.load(x_ptr + (t * sx_t + h * sx_h)[:, None] + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + (t * sz_t + h * sz_h)[:, None] + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=cols < D, other=0.0)
        dtype = out_ptr.dtype.element_ty
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, 1) / D + eps)
        normed = (x * rstd[:, None]).to(dtype).to(tl.float32)
        y = (w.to(dtype).to(tl.float32)[None, :] * normed).to(dtype).to(tl.float32)
        y = y * (z / (1.0 + tl.exp(-z)))
        tl.store(out_ptr + r[:, None] * D + cols[None, :], y.to(dtype), mask=ok)

    return silu_mul_kernel, gated_rms_norm_kernel


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for gate, up [T, I] (rows may be strided, columns contiguous) -> [T, I]."""
    if gate.shape != up.shape or gate.ndim != 2 or gate.stride(1) != 1 or up.stride(1) != 1:
        raise ValueError(f"silu_mul: expected gate and up [T, I] with contiguous columns, got gate "
                         f"{tuple(gate.shape)} strides {gate.stride()}, up {tuple(up.shape)} strides {up.stride()}")
    import triton

    tokens, inter = gate.shape
    out = torch.empty((tokens, inter), dtype=gate.dtype, device=gate.device)
    if tokens:
        block = 1024
        _kernels()[0][(tokens, triton.cdiv(inter, block))](gate, up, out, inter, gate.stride(0), up.stride(0),
                                                           out.stride(0), BLOCK=block)
    return out


def gated_rms_norm(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) * w * silu(gate) per head. x, gate: [T, H, D] (last dim contiguous); weight [D].
    returns [T, H * D] in x's dtype."""
    if x.shape != gate.shape or x.ndim != 3 or weight.shape != (x.shape[2],) or x.stride(2) != 1 \
            or gate.stride(2) != 1:
        raise ValueError(f"gated_rms_norm: expected x and gate [T, H, D] (last dim contiguous) and weight [D], "
                         f"got x {tuple(x.shape)}, gate {tuple(gate.shape)}, weight {tuple(weight.shape)}")
    import triton

    tokens, heads, dim = x.shape
    out = torch.empty((tokens, heads * dim), dtype=x.dtype, device=x.device)
    rows = tokens * heads
    if rows:
        block_d = triton.next_power_of_2(dim)
        block_r = max(1, min(16, 4096 // block_d))
        _kernels()[1][(triton.cdiv(rows, block_r),)](x, gate, weight.contiguous(), out, rows, heads, x.stride(0),
                                                     x.stride(1), gate.stride(0), gate.stride(1), eps, D=dim,
                                                     BLOCK_D=block_d, BLOCK_R=block_r)
    return out
