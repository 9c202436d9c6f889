"""Fused unpack + dequantize of 4-bit GPTQ weights in Triton (any CUDA GPU Triton supports, sm_80+).

One program writes a [BLOCK_K, BLOCK_N] tile of W^T [in, out]: it loads the tile's qweight words
(each word serves 8 consecutive rows), the g_idx of its rows, and gathers scales and zero words by
group, so act-order (scrambled g_idx) costs nothing extra. Plain loads and stores only: no
Hopper-only instructions, so the same kernel runs on A100/L4/RTX 30-40, H100 and B200. Memory traffic
is the 4-bit read plus one dense write, which is what the dense GEMM then reads.

Reference twin: `dequant.dequantize_reference`; runs under TRITON_INTERPRET=1 on CPU for tests
(the variable must be set before this module is imported).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _dequant_kernel(qweight_ptr, qzeros_ptr, scales_ptr, g_idx_ptr, out_ptr, n_in, n_out,
                    ZERO_OFFSET: tl.constexpr, OUT_BF16: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_k = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)             # input rows  [BLOCK_K]
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)             # output cols [BLOCK_N]
    row_ok = rows < n_in
    col_ok = cols < n_out
    mask = row_ok[:, None] & col_ok[None, :]

    # qweight [n_in/8, n_out]: row r sits in word r // 8 at bits 4 * (r % 8).
    words = tl.load(qweight_ptr + (rows // 8)[:, None] * n_out + cols[None, :], mask=mask, other=0)
    q = (words >> ((rows % 8) * 4)[:, None]) & 0xF

    groups = tl.load(g_idx_ptr + rows, mask=row_ok, other=0)
    # qzeros [groups, n_out/8]: column c sits in word c // 8 at bits 4 * (c % 8).
    zwords = tl.load(qzeros_ptr + groups[:, None] * (n_out // 8) + (cols // 8)[None, :], mask=mask, other=0)
    z = ((zwords >> ((cols % 8) * 4)[None, :]) + ZERO_OFFSET) & 0xF
    s = tl.load(scales_ptr + groups[:, None] * n_out + cols[None, :], mask=mask, other=0.0).to(tl.float32)

    w = (q - z).to(tl.float32) * s
    if OUT_BF16:
        # Round to nearest even by hand: what the GPU's cvt.rn does, and what torch's .to(bfloat16)
        # does; the interpreter's cast truncates, so spelling it out keeps CPU parity tests exact.
        bits = w.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        w_out = bits.to(tl.int16).to(tl.bfloat16, bitcast=True)
    else:
        w_out = w.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + rows[:, None] * n_out + cols[None, :], w_out, mask=mask)


def dequantize_triton(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor, *,
                      zero_offset: int, dtype: torch.dtype, block_k: int = 64, block_n: int = 128) -> torch.Tensor:
    """W^T [in, out] in `dtype`.

    qweight int32 [in/8, out], qzeros int32 [groups, out/8], scales fp16 [groups, out], g_idx int32 [in];
    zero_offset 1 for checkpoint_format "gptq", 0 for "gptq_v2". All on one device, contiguous.
    """
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dequantize_triton: output dtype {dtype} is not one of float32, bfloat16, float16")
    n_in, n_out = qweight.shape[0] * 8, qweight.shape[1]
    if g_idx.shape != (n_in,) or scales.shape[1] != n_out or qzeros.shape != (scales.shape[0], n_out // 8):
        raise ValueError(f"dequantize_triton: inconsistent shapes qweight {tuple(qweight.shape)}, qzeros "
                         f"{tuple(qzeros.shape)}, scales {tuple(scales.shape)}, g_idx {tuple(g_idx.shape)}")
    out = torch.empty(n_in, n_out, dtype=dtype, device=qweight.device)
    grid = (triton.cdiv(n_in, block_k), triton.cdiv(n_out, block_n))
    _dequant_kernel[grid](qweight.contiguous(), qzeros.contiguous(), scales.contiguous(),
                          g_idx.to(torch.int32).contiguous(), out, n_in, n_out,
                          ZERO_OFFSET=zero_offset, OUT_BF16=dtype == torch.bfloat16, BLOCK_K=block_k, BLOCK_N=block_n)
    return out
