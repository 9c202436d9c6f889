"""FP8Linear / FP8FusedLinear: the CPU twin against an independent fp32 computation, the fused form
against the float FusedLinear, the compute choice, and _scaled_mm against the twin wherever torch runs
it (the CPU in torch 2.13, CUDA sm_89+)."""

from __future__ import annotations

import pytest
import torch

from fp8_devices import scaled_mm_devices
from judge_core.fp8 import FP8_DTYPE, FP8FusedLinear, FP8Linear, resolve_compute
from judge_core.models.linear import FusedLinear


def bf16_steps(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| in bf16 steps (units in the last place) of b: 8 significant bits."""
    ulp = torch.exp2(torch.floor(torch.log2(b.float().abs().clamp(min=1e-30))) - 7)
    return ((a.float() - b.float()).abs() / ulp).max().item()


def _independent(x: torch.Tensor, lin: FP8Linear) -> torch.Tensor:
    """W8A8 written out from the definition: dequantize both operands explicitly, fp32 matmul, bf16."""
    x32 = x.float().reshape(-1, lin.in_features)
    row_scale = x32.abs().max(dim=1).values.clamp(min=1e-12) / 448.0
    x_deq = torch.clamp(x32 / row_scale[:, None], -448, 448).to(torch.float8_e4m3fn).float() * row_scale[:, None]
    w_deq = lin.weight.float() * lin.weight_scale[:, None]
    return (x_deq @ w_deq.T).to(torch.bfloat16)


@pytest.mark.parametrize("tokens, k, n, dtype", [(7, 64, 48, torch.bfloat16), (33, 128, 96, torch.float32),
                                                 (1, 16, 16, torch.bfloat16)])
def test_twin_matches_independent_fp32(tokens, k, n, dtype):
    torch.manual_seed(0)
    w = torch.randn(n, k, dtype=dtype)
    x = torch.randn(2, tokens, k, dtype=dtype) * torch.logspace(-2, 2, tokens)[:, None].to(dtype)
    lin = FP8Linear.from_float(w, compute="twin")
    y = lin(x)
    assert y.shape == (2, tokens, n) and y.dtype == dtype
    ref = _independent(x, lin).to(dtype).reshape(2, tokens, n)
    steps = bf16_steps(y, ref)
    differ = (y != ref).float().mean().item()
    exact = (x.float() @ w.float().T)
    drift = ((y.float() - exact).norm() / exact.norm()).item()
    print(f"twin vs independent fp32 [{tokens}x{k}x{n}, {dtype}]: max |d| = {steps:.0f} bf16 step(s), "
          f"{differ:.2%} of outputs differ; "
          f"against the unquantized product: relative error {drift:.2e}")
    assert steps <= 1                 # at most one bf16 rounding step apart (scales applied in another order)
    assert drift < 0.06               # and it really is the product: e4m3 on both operands, ~2-4%


def test_zero_rows_and_empty_input():
    lin = FP8Linear.from_float(torch.randn(32, 64), compute="twin")
    x = torch.randn(3, 64)
    x[1] = 0
    y = lin(x)
    assert bool((y[1] == 0).all()) and bool(torch.isfinite(y).all())
    assert lin(torch.randn(0, 64)).shape == (0, 32)


def test_dtype_casts_keep_the_format():
    lin = FP8Linear.from_float(torch.randn(32, 64), compute="twin")
    scale = lin.weight_scale.clone()
    torch.nn.Sequential(lin).to(torch.bfloat16)
    assert lin.weight.dtype == FP8_DTYPE and lin.weight_scale.dtype == torch.float32
    assert torch.equal(lin.weight_scale, scale)


def test_from_fp8_checkpoint_tensors():
    from judge_core.fp8 import dequantize_fp8_tensor, quantize_weight

    torch.manual_seed(1)
    w = torch.randn(64, 96)
    q, s = quantize_weight(w)
    per_channel = FP8Linear.from_fp8(q, s, out_dtype=torch.float32, compute="twin")
    assert torch.equal(per_channel.dequantized_weight(), dequantize_fp8_tensor(q, s))
    per_tensor = FP8Linear.from_fp8(q, torch.tensor(0.25), compute="twin")
    assert torch.equal(per_tensor.weight_scale, torch.full((64,), 0.25))
    qb, sb = quantize_weight(w, (32, 32))
    block = FP8Linear.from_fp8(qb, sb, (32, 32), out_dtype=torch.float32, compute="twin")
    target = dequantize_fp8_tensor(qb, sb, (32, 32))
    err = ((block.dequantized_weight() - target).abs().max() / target.abs().max()).item()
    print(f"block -> per-channel re-rounding: max |d| / max |W| = {err:.2e}")
    assert err <= 2.0**-4
    with pytest.raises(ValueError, match="weight dtype torch.float32"):
        FP8Linear.from_fp8(w, s)
    with pytest.raises(ValueError, match=r"scale shape \(3,\)"):
        FP8Linear.from_fp8(q, torch.ones(3))


def test_compute_choice(monkeypatch):
    from judge_core.fp8 import linear

    assert resolve_compute("auto", torch.device("cpu")) == "twin"   # never the CPU's _scaled_mm by default
    with pytest.raises(ValueError, match="fp8_compute='fast'"):
        FP8Linear(16, 16, compute="fast")
    with pytest.raises(ValueError, match="fp8_compute='scaled_mm' on meta: device meta is neither CUDA nor the CPU"):
        resolve_compute("scaled_mm", torch.device("meta"))
    # A CPU build without row-wise _scaled_mm: the explicit choice fails naming the device and why.
    monkeypatch.setitem(linear._PROBED, "cpu", "torch 9.9: _scaled_mm with row-wise scales failed on cpu: no")
    with pytest.raises(ValueError, match="fp8_compute='scaled_mm' on cpu: torch 9.9: _scaled_mm .* failed on cpu"):
        FP8Linear.from_float(torch.randn(16, 16), compute="scaled_mm")(torch.randn(2, 16))
    assert resolve_compute("twin", torch.device("cpu")) == "twin"


def test_fused_form_returns_the_same_parts():
    """GDN's in_proj: qkv and z in FP8, b and a (32 wide in the 4B) in float, parts in checkpoint order."""
    torch.manual_seed(2)
    fused = FusedLinear(64, [96, 32, 4, 4], ["in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"])
    fused.weight.data = torch.randn(136, 64)
    fp8 = FP8FusedLinear.from_fused(fused, [True, True, False, False], compute="twin")
    x = torch.randn(9, 64)
    ref, got = fused(x), fp8(x)
    assert [t.shape for t in got] == [t.shape for t in ref]
    float_err = max((g - r).abs().max().item() for g, r in zip(got[2:], ref[2:]))
    fp8_ref = FP8Linear.from_float(fused.weight[:128], compute="twin")(x)
    fp8_err = (torch.cat(got[:2], dim=-1) - fp8_ref).abs().max().item()
    print(f"fused FP8 form: float parts max |d| = {float_err:.2e}, fp8 parts vs one FP8Linear {fp8_err:.2e}")
    assert float_err < 1e-5 and fp8_err == 0.0
    # Interleaved flags: float part first.
    mixed = FP8FusedLinear.from_fused(fused, [False, True, True, False], compute="twin")(x)
    assert torch.allclose(mixed[0], ref[0], atol=1e-5) and torch.allclose(mixed[3], ref[3], atol=1e-5)


@pytest.mark.parametrize("device", scaled_mm_devices())
@pytest.mark.parametrize("tokens, k, n", [(1, 2560, 12288), (37, 9216, 2560), (300, 4096, 2560)])
def test_scaled_mm_matches_twin(device, tokens, k, n):
    """The GPU's call itself (fp8 operands, row-wise scales, column-major weight) against the twin:
    they differ by the GEMM's accumulation order and one bf16 rounding of the output (2^-8 relative)."""
    torch.manual_seed(3)
    w = torch.randn(n, k, device=device, dtype=torch.bfloat16) * 0.02
    x = torch.randn(tokens, k, device=device, dtype=torch.bfloat16)
    fast = FP8Linear.from_float(w, compute="scaled_mm")
    twin = FP8Linear.from_float(w, compute="twin")
    y, ref = fast(x).float(), twin(x).float()
    assert fast._resolved[1] == "scaled_mm" and twin._resolved[1] == "twin"
    rel = ((y - ref).abs().max() / ref.abs().max()).item()
    print(f"_scaled_mm vs twin on {device} [{tokens}x{k}x{n}]: max |d| / max |y| = {rel:.2e}")
    assert rel < 2e-2
