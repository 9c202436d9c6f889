"""Our Triton kernels (q/k L2 norm, SwiGLU, gated RMSNorm) against their torch twins, on the CPU under
TRITON_INTERPRET=1 (and on CUDA when present)."""

from __future__ import annotations

import importlib

import pytest
import torch

from judge_core.ops import elementwise as fused
from judge_core.ops import elementwise_triton, qk_norm

DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(params=["interpreter", "cuda"])
def device(request, monkeypatch):
    pytest.importorskip("triton")
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        yield "cuda"
        return
    from judge_core.ops import triton_kernels

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    importlib.reload(triton_kernels)                  # re-decorate under the interpreter
    yield "cpu"
    monkeypatch.delenv("TRITON_INTERPRET")
    importlib.reload(triton_kernels)


def _ulp_tol(ref: torch.Tensor, dtype, ulps: int) -> float:
    """`ulps` bf16 units in the last place at the largest |value| (float32: summation order only)."""
    if dtype == torch.float32:
        return 1e-5 * max(1.0, ref.abs().max().item())
    return ulps * 2.0 ** (torch.floor(torch.log2(ref.abs().max())).item() - 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,heads,dim", [(1, 2, 16), (37, 3, 24), (130, 2, 128)])
def test_qk_l2norm_matches_twin(device, dtype, tokens, heads, dim):
    gen = torch.Generator().manual_seed(tokens)
    key_dim, value_dim = heads * dim, 2 * heads * dim
    full = (torch.randn(tokens, 2 * key_dim + value_dim + 5, generator=gen) * 4).to(dtype).to(device)
    qkv = full[:, :2 * key_dim + value_dim]               # row-strided, as the conv output may be
    ref_q, ref_k = qk_norm.qk_l2norm_torch(qkv, key_dim, dim)
    q, k = qk_norm.qk_l2norm_triton(qkv, key_dim, dim)
    assert q.shape == (tokens, heads, dim) and q.is_contiguous() and k.is_contiguous() and q.dtype == dtype
    err = max((q.float() - ref_q.float()).abs().max().item(), (k.float() - ref_k.float()).abs().max().item())
    print(f"qk l2norm triton ({device}) vs torch, {dtype}, T={tokens} H={heads} D={dim}: max |delta| = {err:.3g}")
    assert err <= (1e-6 if dtype == torch.float32 else 2.0 ** -8)          # 1 bf16 ulp below 1.0
    norms = q.float().norm(dim=-1)
    assert (norms - 1).abs().max() < 1e-2
    # the formula itself (fla's l2norm_fwd): x / sqrt(sum x^2 + 1e-6)
    xq = qkv[:, :key_dim].float().reshape(tokens, heads, dim)
    formula = xq / torch.sqrt((xq * xq).sum(-1, keepdim=True) + 1e-6)
    assert (ref_q.float() - formula).abs().max() <= (1e-6 if dtype == torch.float32 else 2.0 ** -8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,inter", [(1, 7), (33, 1500), (5, 2048)])
def test_silu_mul_matches_twin(device, dtype, tokens, inter):
    gen = torch.Generator().manual_seed(inter)
    gate_up = (torch.randn(tokens, 2 * inter, generator=gen) * 3).to(dtype).to(device)
    gate, up = gate_up.split([inter, inter], dim=-1)       # two row-strided views, as the fused GEMM gives
    ref = fused.silu_mul(gate, up)
    got = elementwise_triton.silu_mul(gate, up)
    err = (got.float() - ref.float()).abs().max().item()
    print(f"silu_mul triton ({device}) vs eager, {dtype}, T={tokens} I={inter}: max |delta| = {err:.3g}")
    assert got.shape == ref.shape and got.dtype == dtype
    # bf16: silu(gate) may round 1 ulp apart (exp differs in its last bit), so the product 2 ulp
    assert err <= _ulp_tol(ref.float(), dtype, 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,heads,dim", [(1, 1, 8), (37, 3, 24), (65, 4, 128)])
def test_gated_rms_norm_matches_twin(device, dtype, tokens, heads, dim):
    gen = torch.Generator().manual_seed(dim)
    x = (torch.randn(tokens, heads, dim, generator=gen) * 2).to(dtype).to(device)
    z_full = torch.randn(tokens, heads * dim + 9, generator=gen).to(dtype).to(device)
    z = z_full[:, :heads * dim].reshape(tokens, heads, dim)   # strided, as in_proj's output
    weight = (1 + 0.2 * torch.randn(dim, generator=gen)).to(dtype).to(device)
    ref = fused.gated_rms_norm(x, z, weight, 1e-6)
    got = elementwise_triton.gated_rms_norm(x, z, weight, 1e-6)
    err = (got.float() - ref.float()).abs().max().item()
    print(f"gated rms norm triton ({device}) vs eager, {dtype}, T={tokens} H={heads} D={dim}: "
          f"max |delta| = {err:.3g}")
    assert got.shape == (tokens, heads * dim) and got.dtype == dtype
    assert err <= _ulp_tol(ref.float(), dtype, 2)


def test_bad_shapes_raise():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"silu_mul: expected gate and up \[T, I\]"):
        elementwise_triton.silu_mul(x, x[:, :5])
    with pytest.raises(ValueError, match=r"gated_rms_norm: expected x and gate"):
        elementwise_triton.gated_rms_norm(x.reshape(4, 2, 3), x.reshape(4, 2, 3), torch.ones(4), 1e-6)
    with pytest.raises(ValueError, match=r"key_dim \(6\) a multiple of head_k_dim \(4\)"):
        qk_norm.qk_l2norm_torch(torch.randn(3, 20), 6, 4)
    with pytest.raises(ValueError, match="unknown qk norm implementation"):
        qk_norm.qk_l2norm(torch.randn(3, 20), 4, 4, impl="fast")
