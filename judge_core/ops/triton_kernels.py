"""Our Triton kernels (jit-decorated at import: import this module lazily, on CUDA or under
TRITON_INTERPRET=1). Wrappers with shapes, checks and launch configs: qk_norm.py, elementwise_triton.py.

Written without tl.sigmoid, tl.zeros, tl.sum (themselves @jit, so not runnable by the interpreter once
triton is imported, which the tests need): tl.reduce with `add` instead of tl.sum.
No tl.dot here; one added must pass input_precision="ieee" for fp32 inputs (true-fp32 mode).
"""

import triton
import triton.language as tl


@triton.jit
def add(a, b):
    return a + b


# The token count T (and R = heads x T) changes with every batch. Triton specializes int arguments on
# `% 16 == 0` and `== 1`, so a plain int T compiles a second binary at the first batch whose T is not a
# multiple of 16 -- after warm-up, whose packs all are. fla does the same (do_not_specialize=['T']).
@triton.jit(do_not_specialize=["T"])
def qk_l2norm_kernel(x_ptr, out_ptr, T, stride_x, eps, HEADS2: tl.constexpr, D: tl.constexpr,
                     BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
    # program (i, h): rows i*BLOCK_T.., head h of the 2 Hk heads (q heads, then k heads), which are
    # qkv's columns h*D..(h+1)*D; out is [2, T, Hk, D] = [T, 2 Hk, D] per half.
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    head = tl.program_id(1)
    cols = tl.arange(0, BLOCK_D)
    ok = (rows < T)[:, None] & (cols < D)[None, :]
    src = x_ptr + rows.to(tl.int64)[:, None] * stride_x + head * D + cols[None, :]
    x = tl.load(src, mask=ok, other=0.0).to(tl.float32)
    y = x / tl.sqrt(tl.reduce(x * x, 1, add) + eps)[:, None]
    half = head // (HEADS2 // 2)                 # 0: q, 1: k
    head_in_half = head % (HEADS2 // 2)
    dst = (out_ptr + half.to(tl.int64) * T * (HEADS2 // 2) * D + rows.to(tl.int64)[:, None] * (HEADS2 // 2) * D
           + head_in_half * D + cols[None, :])
    tl.store(dst, y.to(out_ptr.dtype.element_ty), mask=ok)


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


@triton.jit(do_not_specialize=["R"])
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
    rstd = 1.0 / tl.sqrt(tl.reduce(x * x, 1, add) / D + eps)
    normed = (x * rstd[:, None]).to(dtype).to(tl.float32)
    y = (w.to(dtype).to(tl.float32)[None, :] * normed).to(dtype).to(tl.float32)
    y = y * (z / (1.0 + tl.exp(-z)))
    tl.store(out_ptr + r[:, None] * D + cols[None, :], y.to(dtype), mask=ok)
