"""Triton kernels for the two fattest elementwise ops of a layer; their twins are in ops/elementwise.py.

- `silu_mul`: SwiGLU, silu(gate) * up, reading gate and up where the fused gate_up GEMM wrote them
  ([T, 2I] output, two row-strided views) and writing [T, I]: 6.7% of the warm GPU time on an H100
  (1.0 ms a call at 32k x 9216, memory-bound), so one read of each input and one write is the floor.
- `gated_rms_norm`: Gated DeltaNet's output norm x / rms(x) * w * silu(z) per head, reading z in place
  from the in_proj output and writing [T, H * D] ready for out_proj (the reshape is free).

Both round where their eager twins (transformers' order) round, so bf16 results agree with the twin to
within the last bit of exp. One fixed launch config each (no autotune: nothing tunes after warm-up).
CUDA only in the model (the KernelSet picks them); the tests run them on CPU under TRITON_INTERPRET=1.
The kernels themselves are in triton_kernels.py.
"""

from __future__ import annotations

import torch




def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for gate, up [T, I] (rows may be strided, columns contiguous) -> [T, I]."""
    if gate.shape != up.shape or gate.ndim != 2 or gate.stride(1) != 1 or up.stride(1) != 1:
        raise ValueError(f"silu_mul: expected gate and up [T, I] with contiguous columns, got gate "
                         f"{tuple(gate.shape)} strides {gate.stride()}, up {tuple(up.shape)} strides {up.stride()}")
    import triton

    from . import triton_kernels

    tokens, inter = gate.shape
    out = torch.empty((tokens, inter), dtype=gate.dtype, device=gate.device)
    if tokens:
        block = 1024
        triton_kernels.silu_mul_kernel[(tokens, triton.cdiv(inter, block))](gate, up, out, inter, gate.stride(0), up.stride(0),
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

    from . import triton_kernels

    tokens, heads, dim = x.shape
    out = torch.empty((tokens, heads * dim), dtype=x.dtype, device=x.device)
    rows = tokens * heads
    if rows:
        block_d = triton.next_power_of_2(dim)
        block_r = max(1, min(16, 4096 // block_d))
        triton_kernels.gated_rms_norm_kernel[(triton.cdiv(rows, block_r),)](x, gate, weight.contiguous(), out, rows, heads, x.stride(0),
                                                     x.stride(1), gate.stride(0), gate.stride(1), eps, D=dim,
                                                     BLOCK_D=block_d, BLOCK_R=block_r)
    return out
