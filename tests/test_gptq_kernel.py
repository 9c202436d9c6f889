"""The fused Triton dequant kernel against the torch twin: under TRITON_INTERPRET=1 on the CPU (in a
subprocess, since the variable must be set before triton compiles anything), and on a GPU when present."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from judge_core.gptq import GPTQLinear
from judge_core.gptq.dequant import dequantize, dequantize_reference
from judge_core.gptq.format import QuantConfig, default_g_idx

REPO = Path(__file__).resolve().parent.parent

# Awkward shapes: in not a multiple of the 64-row block, out not a multiple of the 128-column block.
CASES = [  # (in, out, group_size, desc_act, checkpoint_format)
    (64, 128, 16, False, "gptq"),
    (136, 24, -1, False, "gptq_v2"),
    (256, 200, 32, True, "gptq"),
    (512, 72, 64, True, "gptq_v2"),
]


def random_tensors(n_in, n_out, group_size, desc_act, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    n_groups = 1 if group_size == -1 else n_in // group_size
    qweight = torch.randint(-2**31, 2**31 - 1, (n_in // 8, n_out), generator=gen, dtype=torch.int32)
    qzeros = torch.randint(-2**31, 2**31 - 1, (n_groups, n_out // 8), generator=gen, dtype=torch.int32)
    scales = (torch.randn(n_groups, n_out, generator=gen) * 0.05).half()
    g_idx = default_g_idx(n_in, group_size)
    if desc_act:
        g_idx = g_idx[torch.randperm(n_in, generator=gen)]
    return [t.to(device) for t in (qweight, qzeros, scales, g_idx)]


INTERPRETER_SCRIPT = """
import torch
from judge_core.gptq.dequant_triton import dequantize_triton
from judge_core.gptq.dequant import dequantize_reference
from judge_core.gptq.format import QuantConfig
from tests.test_gptq_kernel import CASES, random_tensors
for n_in, n_out, gs, act, fmt in CASES:
    t = random_tensors(n_in, n_out, gs, act)
    cfg = QuantConfig(group_size=gs, desc_act=act, checkpoint_format=fmt)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        got = dequantize_triton(*t, zero_offset=cfg.zero_offset, dtype=dtype)
        want = dequantize_reference(*t, cfg, dtype)
        err = (got.float() - want.float()).abs().max().item()
        same = bool(torch.equal(got, want))
        print(f"CASE in={n_in} out={n_out} gs={gs} desc_act={act} {fmt} {dtype}: max |delta| = {err:.3g} equal={same}")
"""


def test_triton_kernel_matches_twin_under_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", INTERPRETER_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith("CASE")]
    assert len(lines) == 3 * len(CASES)
    assert all(l.endswith("equal=True") for l in lines), "kernel and twin differ (bit-exact parity expected)"


def test_dispatcher_uses_twin_on_cpu():
    t = random_tensors(64, 128, 16, True)
    cfg = QuantConfig(group_size=16, desc_act=True)
    assert torch.equal(dequantize(*t, cfg, torch.bfloat16), dequantize_reference(*t, cfg, torch.bfloat16))


def test_gptq_linear_forward_is_dense_matmul():
    n_in, n_out = 64, 48
    layer = GPTQLinear(n_in, n_out, 4, QuantConfig(group_size=16), bias=True)
    qweight, qzeros, scales, g_idx = random_tensors(n_in, n_out, 16, False, seed=3)
    layer.qweight.copy_(qweight); layer.qzeros.copy_(qzeros); layer.scales.copy_(scales); layer.g_idx.copy_(g_idx)
    layer.bias.copy_(torch.randn(n_out))
    x = torch.randn(3, 5, n_in)
    want = torch.nn.functional.linear(x.double(), layer.dequantized_weight(torch.float64, reference=True),
                                      layer.bias.double())
    err = (layer(x).double() - want).abs().max().item()
    print(f"GPTQLinear fp32 forward vs float64 dense: max |delta| = {err:.3g}")
    assert layer(x).shape == (3, 5, n_out) and err < 1e-4
    # A model-wide dtype cast keeps the checkpoint's fp16 scales; the bias follows the cast.
    scales = layer.scales.clone()
    layer.to(torch.bfloat16)
    assert layer.scales.dtype == torch.float16 and torch.equal(layer.scales, scales)
    assert layer.bias.dtype == torch.bfloat16 and layer.qweight.dtype == torch.int32
    layer.float()
    assert torch.equal(layer.scales, scales) and layer.bias.dtype == torch.float32
    with pytest.raises(ValueError, match="in_features=60"):
        GPTQLinear(60, 48, 1, QuantConfig(group_size=-1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("case", CASES + [(2560, 9216, 128, True, "gptq")])
def test_triton_kernel_matches_twin_on_gpu(case):
    n_in, n_out, gs, act, fmt = case
    t = random_tensors(n_in, n_out, gs, act, device="cuda")
    cfg = QuantConfig(group_size=gs, desc_act=act, checkpoint_format=fmt)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        got = dequantize(*t, cfg, dtype)
        want = dequantize_reference(*t, cfg, dtype)
        err = (got.float() - want.float()).abs().max().item()
        print(f"GPU {case} {dtype}: max |delta| = {err:.3g}")
        assert torch.equal(got, want)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_kernel_compiles_for_sm80_to_sm100(tmp_path):
    for arch in ("sm_80", "sm_90"):
        result = subprocess.run(["nvcc", "-c", f"-arch={arch}", str(REPO / "csrc" / "gptq_dequant.cu"),
                                 "-o", str(tmp_path / f"gptq_{arch}.o")], capture_output=True, text=True, timeout=300)
        print(f"nvcc -arch={arch}: rc={result.returncode} {result.stderr[-500:]}")
        assert result.returncode == 0


@pytest.mark.skipif(not torch.cuda.is_available() or shutil.which("nvcc") is None, reason="needs a CUDA GPU and nvcc")
@pytest.mark.parametrize("case", CASES + [(2560, 9216, 128, True, "gptq")])
def test_cuda_kernel_matches_twin_on_gpu(case):
    from judge_core.gptq.dequant_cuda import dequantize_cuda

    n_in, n_out, gs, act, fmt = case
    t = random_tensors(n_in, n_out, gs, act, device="cuda")
    cfg = QuantConfig(group_size=gs, desc_act=act, checkpoint_format=fmt)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        got = dequantize_cuda(*t, zero_offset=cfg.zero_offset, dtype=dtype)
        want = dequantize_reference(*t, cfg, dtype)
        err = (got.float() - want.float()).abs().max().item()
        print(f"CUDA {case} {dtype}: max |delta| = {err:.3g}")
        assert torch.equal(got, want)
