"""The KernelSet: chosen once per (device, dtype) from feature checks and env overrides; the model's
layers run what it names (checked with stand-ins for the CUDA-only libraries)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fla_stand_in import install_fla_stand_in
from judge_core.models.batch import PackedBatch
from judge_core.models.weights import load_qwen3_5
from judge_core.ops import attention, kernels
from judge_core.ops.attention import varlen_attention, varlen_attention_naive
from judge_core.ops.kernels import KernelSet, no_tf32, select_kernels

LABEL_IDS = [32, 33]
LENGTHS = [1, 7, 65, 2, 130]


def _prompts(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 248_000, (n,), generator=gen).tolist() for n in lengths]


def test_cpu_choices_and_describe():
    for dtype in (torch.float32, torch.bfloat16):
        ks = select_kernels("cpu", dtype, env={})
        assert (ks.gated_delta, ks.attention, ks.conv, ks.elementwise, ks.qk_norm) == \
            ("blocked", "sdpa", "torch", "eager", "torch")
        assert ks.fp32_exact is (dtype == torch.float32)
        row = ks.describe()
        assert row["dtype"] == str(dtype).removeprefix("torch.") and row["device"] == "cpu"
        json.dumps(row)                                   # bench rows are JSON


def test_env_overrides_and_bad_values():
    env = {"JUDGE_CORE_GATED_DELTA": "fla", "JUDGE_CORE_ATTENTION": "naive", "JUDGE_CORE_CONV": "triton",
           "JUDGE_CORE_ELEMENTWISE": "compiled"}
    ks = select_kernels("cpu", torch.bfloat16, env=env)
    assert (ks.gated_delta, ks.attention, ks.conv, ks.elementwise) == ("fla", "naive", "triton", "compiled")
    assert select_kernels("cpu", torch.float32, env={"JUDGE_CORE_COMPILE": "all"}).elementwise == "compiled"
    assert select_kernels("cpu", torch.float32, env={"JUDGE_CORE_COMPILE": "0"}).elementwise == "eager"
    with pytest.raises(ValueError, match=r"JUDGE_CORE_ATTENTION='flash': expected one of \('flash_attn'"):
        select_kernels("cpu", torch.float32, env={"JUDGE_CORE_ATTENTION": "flash"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp32_is_exact_and_bf16_is_fast():
    fp32 = select_kernels("cuda", torch.float32, env={})
    assert fp32.fp32_exact and fp32.gated_delta == "torch" and fp32.attention == "sdpa"
    bf16 = select_kernels("cuda", torch.bfloat16, env={})
    print(f"cuda bf16 kernels: {bf16.describe()}")
    assert bf16.gated_delta == ("fla" if kernels.fla_available() else "torch")
    assert bf16.attention in ("flash_attn", "varlen", "sdpa") and not bf16.fp32_exact


def test_no_tf32_restores_settings():
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("high")
    try:
        with no_tf32():
            assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32 == before[1]
    finally:
        torch.set_float32_matmul_precision(before[0])


def test_every_kernel_switch_is_read_in_one_module():
    """os.environ is read for the JUDGE_CORE_* kernel switches in ops/switches.py only."""
    import pathlib
    import re

    from judge_core.ops.switches import KERNEL_SWITCHES, read_switch

    root = pathlib.Path(kernels.__file__).parents[1]
    readers = set()
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if any(re.search(rf"environ(\.get\(|\[)\s*[\"']{name}", text) for name in KERNEL_SWITCHES):
            readers.add(path.relative_to(root).as_posix())
    assert readers == set(), readers               # nobody indexes os.environ by a switch's name ...
    assert select_kernels("cpu", torch.float32, env={}).gptq_dequant == "torch"
    assert kernels.gptq_dequant_choice({"JUDGE_CORE_GPTQ_KERNEL": "cuda"}) == "cuda"
    with pytest.raises(ValueError, match=r"JUDGE_CORE_GPTQ_KERNEL='exllama': expected one of"):
        kernels.gptq_dequant_choice({"JUDGE_CORE_GPTQ_KERNEL": "exllama"})
    with pytest.raises(KeyError, match="not a judge_core kernel switch"):
        read_switch("JUDGE_CORE_ATENTION")       # ... and a misspelt switch is an error, not ignored


def test_cpu_half_matmul_choice():
    # fp32 GEMMs for a half model on a CPU without half GEMM instructions (torch's generic kernel is slow)
    assert select_kernels("cpu", torch.float32, env={}).matmul == "native"
    for dtype in (torch.bfloat16, torch.float16):
        want = "native" if kernels.cpu_has_half_gemm(dtype) else "fp32"
        assert select_kernels("cpu", dtype, env={}).matmul == want
    assert select_kernels("cpu", torch.bfloat16, env={"JUDGE_CORE_MATMUL": "native"}).matmul == "native"
    with pytest.raises(ValueError, match=r"JUDGE_CORE_MATMUL='bf16': expected one of \('native', 'fp32'\)"):
        select_kernels("cpu", torch.bfloat16, env={"JUDGE_CORE_MATMUL": "bf16"})


def test_bf16_model_with_fp32_gemms_matches_native(tiny_text_ckpt):
    """The fp32-GEMM route of a bf16 model against the native bf16 GEMM (its twin) and the fp32 model."""
    from judge_core.models.linear import FusedLinear, Linear

    model = load_qwen3_5(tiny_text_ckpt, dtype=torch.bfloat16, label_ids=LABEL_IDS)
    exact = load_qwen3_5(tiny_text_ckpt, dtype=torch.float32, label_ids=LABEL_IDS)
    batch = PackedBatch.from_token_lists(_prompts(LENGTHS), "cpu")
    base = select_kernels("cpu", torch.bfloat16, env={})
    out = {}
    with torch.inference_mode():
        for matmul in ("native", "fp32"):
            model.kernels = dataclasses.replace(base, matmul=matmul)
            out[matmul] = model(batch)
            projections = [m for m in model.modules() if isinstance(m, (FusedLinear, Linear))]
            assert projections and all(m.compute_dtype == (torch.float32 if matmul == "fp32" else None)
                                       for m in projections)
        want = exact(batch)
    d_twin = (out["fp32"] - out["native"]).abs().max().item()
    d_exact = (out["fp32"] - want).abs().max().item()
    d_native_exact = (out["native"] - want).abs().max().item()
    print(f"bf16 model, fp32 GEMMs vs native bf16 GEMMs: max |d logit| {d_twin:.3g}; vs the fp32 model "
          f"{d_exact:.3g} (native bf16 vs fp32 model: {d_native_exact:.3g})")
    # the routes differ in accumulation order only: far inside the bf16 model's own drift from fp32
    assert d_twin < 0.02 and d_exact <= 1.5 * d_native_exact + 0.01


def test_model_selects_once(tiny_text_ckpt, monkeypatch):
    model = load_qwen3_5(tiny_text_ckpt, dtype=torch.float32, label_ids=LABEL_IDS)
    calls = []
    real = kernels.select_kernels

    def counting(device, dtype, env=None):
        calls.append((str(device), dtype))
        return real(device, dtype, env={})

    monkeypatch.setattr("judge_core.models.qwen3_5.select_kernels", counting)
    batch = PackedBatch.from_token_lists(_prompts([3, 5]), "cpu")
    with torch.inference_mode():
        model(batch)
        model(batch)
    assert calls == [("cpu", torch.float32)]
    assert model.kernels.describe()["fp32_exact"] is True


def _fla_stand_in(monkeypatch, seen):
    """The stand-in fla (tests/fla_stand_in.py), recording whether q/k arrive normalised and the scale."""
    def record(q, k, v, g, beta, scale, cu_seqlens, l2):
        seen.append(dict(l2=l2, qnorm=q.float().norm(dim=-1).sub(1).abs().max().item(),
                         knorm=k.float().norm(dim=-1).sub(1).abs().max().item(), scale=scale))

    install_fla_stand_in(monkeypatch, record)


def test_model_fla_path_normalises_qk_itself(tiny_text_ckpt, monkeypatch):
    """With gated_delta=fla the model hands fla q/k already L2-normalised and use_qk_l2norm_in_kernel=False
    (fla's own l2norm re-tunes on every new token count); the logits match the torch path."""
    seen: list = []
    _fla_stand_in(monkeypatch, seen)
    model = load_qwen3_5(tiny_text_ckpt, dtype=torch.float32, label_ids=LABEL_IDS)
    batch = PackedBatch.from_token_lists(_prompts(LENGTHS), "cpu")
    with torch.inference_mode():
        want = model(batch)
        model.kernels = dataclasses.replace(model.kernels, gated_delta="fla")
        got = model(batch)
    gdn_layers = sum(t == "linear_attention" for t in model.args.layer_types)
    assert len(seen) == gdn_layers and all(not s["l2"] for s in seen)
    assert max(max(s["qnorm"], s["knorm"]) for s in seen) < 1e-5
    assert seen[0]["scale"] == model.args.linear_key_head_dim ** -0.5
    err = (got - want).abs().max().item()
    print(f"packed fp32, fla path (stand-in kernel, our q/k norm) vs torch path: max |delta logit| = {err:.3g}")
    assert err < 1e-4


@pytest.mark.parametrize("style", ["torch_2_13", "torch_2_11", "torch_2_10"])
def test_torch_varlen_glue_with_a_stand_in(monkeypatch, style):
    """torch's varlen_attn needs CUDA: check our call (causal flag, GQA, int32 offsets) against both
    signatures with a stand-in that answers with the twin."""
    import torch.nn.attention.varlen as varlen_module

    seen = {}

    def varlen_2_13(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
        seen.update(cu=cu_q.dtype, causal=window_size == (-1, 0), gqa=enable_gqa, kv_heads=k.shape[1], max=max_q)
        return varlen_attention_naive(q, k, v, cu_q.tolist(), scale)

    def varlen_2_11(q, k, v, cu_q, cu_k, max_q, max_k, *, return_aux=None, scale=None, window_size=(-1, -1)):
        seen.update(cu=cu_q.dtype, causal=window_size == (-1, 0), gqa=False, kv_heads=k.shape[1], max=max_q)
        return varlen_attention_naive(q, k, v, cu_q.tolist(), scale)

    def varlen_2_10(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=False, return_aux=None):
        seen.update(cu=cu_q.dtype, causal=is_causal, gqa=False, kv_heads=k.shape[1], max=max_q)
        return varlen_attention_naive(q, k, v, cu_q.tolist(), q.shape[-1] ** -0.5)

    stand_ins = {"torch_2_13": varlen_2_13, "torch_2_11": varlen_2_11, "torch_2_10": varlen_2_10}
    monkeypatch.setattr(varlen_module, "varlen_attn", stand_ins[style])
    attention._torch_varlen_params.cache_clear()
    try:
        lengths = [1, 3, 63, 130]
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(sum(lengths), 4, 16, generator=gen)          # scale 0.25 = 16^-0.5
        k, v = torch.randn(sum(lengths), 2, 16, generator=gen), torch.randn(sum(lengths), 2, 16, generator=gen)
        bounds = [0] + torch.tensor(lengths).cumsum(0).tolist()
        got = varlen_attention(q, k, v, torch.tensor(bounds), bounds, 130, 0.25, impl="varlen")
        if style == "torch_2_10":
            with pytest.raises(ValueError, match="no scale argument; scale 0.3"):
                varlen_attention(q, k, v, torch.tensor(bounds), bounds, 130, 0.3, impl="varlen")
    finally:
        attention._torch_varlen_params.cache_clear()
    assert seen["cu"] == torch.int32 and seen["causal"] and seen["max"] == 130
    assert (seen["gqa"], seen["kv_heads"]) == ((True, 2) if style == "torch_2_13" else (False, 4))
    err = (got - varlen_attention_naive(q, k, v, bounds, 0.25)).abs().max().item()
    print(f"torch varlen glue ({style} stand-in), lengths {lengths}: max |delta| = {err:.3g}")
    assert err < 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_torch_varlen_on_cuda(dtype):
    if not kernels.torch_varlen_works("cuda", dtype):
        pytest.skip("torch varlen attention does not run on this GPU / build")
    lengths = [1, 3, 63, 130]
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(sum(lengths), 16, 256, device="cuda", dtype=dtype, generator=gen)
    k = torch.randn(sum(lengths), 4, 256, device="cuda", dtype=dtype, generator=gen)
    v = torch.randn(sum(lengths), 4, 256, device="cuda", dtype=dtype, generator=gen)
    bounds = [0] + torch.tensor(lengths).cumsum(0).tolist()
    got = varlen_attention(q, k, v, torch.tensor(bounds, device="cuda"), bounds, 130, 256 ** -0.5, impl="varlen")
    err = (got.float() - varlen_attention_naive(q, k, v, bounds, 256 ** -0.5).float()).abs().max().item()
    print(f"torch varlen on CUDA ({dtype}) vs naive, lengths {lengths}: max |delta| = {err:.3g}")
    assert err < 2e-2


def test_kernelset_is_frozen():
    ks = select_kernels("cpu", torch.float32, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        ks.attention = "naive"
    assert isinstance(ks, KernelSet) and ks == select_kernels("cpu", torch.float32, env={})


def test_model_triton_path_under_interpreter(tiny_text_ckpt, monkeypatch):
    """The whole Triton path of the model (conv, q/k norm ahead of fla, SwiGLU, gated RMSNorm) run on the
    CPU under TRITON_INTERPRET=1, against the eager torch path, fp32 and bf16."""
    pytest.importorskip("triton")
    import importlib

    from judge_core.ops import triton_kernels

    from judge_core.ops import elementwise as fused

    seen: list = []
    _fla_stand_in(monkeypatch, seen)
    # the ops without a Triton kernel of ours run torch.compile'd on CUDA; eager here (compiling on the
    # CPU takes minutes and is not what this test is about)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    fused.elementwise_table.cache_clear()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    importlib.reload(triton_kernels)
    from judge_core.ops import conv
    conv._triton_kernel.cache_clear()
    try:
        batch = PackedBatch.from_token_lists(_prompts([1, 7, 20, 2]), "cpu")
        for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 0.15)):
            model = load_qwen3_5(tiny_text_ckpt, dtype=dtype, label_ids=LABEL_IDS)
            with torch.inference_mode():
                want = model(batch)
                model.kernels = dataclasses.replace(model.kernels, gated_delta="fla", conv="triton",
                                                    elementwise="triton", qk_norm="triton")
                got = model(batch)
            err = (got - want).abs().max().item()
            print(f"packed {dtype}, Triton path (interpreter) vs eager torch path: max |delta logit| = {err:.3g}")
            assert err < tol
    finally:
        monkeypatch.delenv("TRITON_INTERPRET")
        importlib.reload(triton_kernels)
        conv._triton_kernel.cache_clear()
        fused.elementwise_table.cache_clear()
    assert seen and all(not s["l2"] for s in seen)
