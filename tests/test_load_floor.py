"""The loading floor: config.json read once per load for every backend and quantization; the one table
of quantization methods; GPTQ's fused projection groups on the packed path against their split twin."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import torch

LABEL_IDS = [32, 33]

# Opens of a file named config.json, counted while `_COUNTING` holds a list (an audit hook cannot be
# removed, so it stays installed and idle outside these tests).
_COUNTING: list | None = None


def _audit(event, args):
    if _COUNTING is not None and event == "open" and str(args[0]).replace("\\", "/").endswith("/config.json"):
        _COUNTING.append(str(args[0]))


sys.addaudithook(_audit)


def _count_config_opens(fn):
    global _COUNTING
    _COUNTING = []
    try:
        result = fn()
        return result, list(_COUNTING)
    finally:
        _COUNTING = None


@pytest.fixture(scope="module")
def checkpoints(tiny_ckpt_factory, tmp_path_factory):
    """{"none": float, "gptq": GPTQ rtn, "fp8": FP8 block-scaled} tiny checkpoints."""
    from judge_core.fp8 import write_fp8_checkpoint
    from judge_core.gptq import quantize_checkpoint

    src = tiny_ckpt_factory("text")
    return {"none": src,
            "gptq": quantize_checkpoint(src, tmp_path_factory.mktemp("gptq"), method="rtn", group_size=32,
                                        device="cpu"),
            "fp8": write_fp8_checkpoint(src, tmp_path_factory.mktemp("fp8"), block=(16, 16))}


@pytest.mark.parametrize("method", ["none", "gptq", "fp8"])
@pytest.mark.parametrize("backend", ["hf", "packed"])
def test_config_json_read_once_per_load(checkpoints, backend, method):
    """Every open of config.json during a backend load from a path (ours and transformers'): one."""
    from judge_core.backends import load_backend

    loaded, opens = _count_config_opens(lambda: load_backend(
        backend, str(checkpoints[method]), dtype=torch.float32, device=torch.device("cpu"), label_ids=LABEL_IDS))
    print(f"\n{backend} / {method}: config.json opened {len(opens)} time(s)")
    assert loaded.name == backend
    assert opens == [str(checkpoints[method] / "config.json")]


def test_judge_reads_config_once(checkpoints, monkeypatch):
    """Judge.from_pretrained reads config.json once through judge_core (the tokenizer's own reads aside)."""
    from judge_core import checkpoint
    from judge_core.api import Judge

    calls = []
    real = checkpoint.read_config
    monkeypatch.setattr(checkpoint, "read_config", lambda path: calls.append(path) or real(path))
    judge = Judge.from_pretrained(str(checkpoints["gptq"]), backend="auto", warmup=False)
    assert judge.backend.name == "packed" and len(calls) == 1


def test_one_table_of_methods(tmp_path):
    """The methods judge_core reads are judge_core.quant's; config and option errors name them."""
    from judge_core.checkpoint import Checkpoint
    from judge_core.cli.main import build_parser
    from judge_core.quant import METHODS, QUANTIZATIONS, check_quantization

    assert METHODS == ("gptq", "fp8") and QUANTIZATIONS == ("none", "fp8")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_5_text",
                                                      "quantization_config": {"quant_method": "awq", "bits": 4}}))
    with pytest.raises(ValueError, match=r"quant_method='awq' is not supported.*gptq, fp8"):
        Checkpoint.open(tmp_path)
    with pytest.raises(ValueError, match=r"quantization='gptq'.*\('none', 'fp8'\)"):
        check_quantization("gptq")
    quantize = build_parser()._subparsers._group_actions[0].choices["quantize"]
    method = next(a for a in quantize._actions if a.dest == "method")
    assert tuple(method.choices) == ("rtn", *METHODS)


def _p1(model, prompts) -> torch.Tensor:
    from judge_core.models.batch import PackedBatch

    with torch.inference_mode():
        logits = model(PackedBatch.from_token_lists(prompts, torch.device("cpu")))
    return 100 * torch.softmax(logits.double(), dim=-1)[:, 0]


def test_fused_gptq_matches_split(checkpoints):
    """GPTQ on the packed path: q/k/v and GDN's input projections fused (one dequantize + GEMM) against
    the split twin (one GPTQLinear per checkpoint Linear), fp32."""
    from judge_core.gptq.fused import FusedGPTQLinear
    from judge_core.models.linear import SplitLinear
    from judge_core.models.weights import load_qwen3_5

    path = checkpoints["gptq"]
    fused = load_qwen3_5(path, dtype=torch.float32, label_ids=LABEL_IDS)
    split = load_qwen3_5(path, dtype=torch.float32, label_ids=LABEL_IDS, fuse_quantized=False)
    for layer_f, layer_s in zip(fused.layers, split.layers):
        group_f = getattr(layer_f, "self_attn", None) or layer_f.linear_attn
        group_s = getattr(layer_s, "self_attn", None) or layer_s.linear_attn
        proj_f = getattr(group_f, "qkv_proj", None) or group_f.in_proj
        proj_s = getattr(group_s, "qkv_proj", None) or group_s.in_proj
        assert isinstance(proj_f, FusedGPTQLinear) and isinstance(proj_s, SplitLinear)
        assert isinstance(layer_f.mlp.gate_up_proj, FusedGPTQLinear)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 248000, (n,), generator=g).tolist() for n in (1, 37, 200, 513)]
    want, got = _p1(split, prompts), _p1(fused, prompts)
    d_p1 = (got - want).abs().max().item()
    print(f"\nfused vs split GPTQ (packed, fp32): max |delta p1| = {d_p1:.3g} pp")
    assert d_p1 <= 1e-4
    assert (want - 50).abs().max().item() > 0.5     # the random judge has an opinion: p1 is not a constant


def test_act_order_mismatch_keeps_group_split(checkpoints, tmp_path, caplog):
    """Parts whose act-order g_idx differ cannot share one qweight: split, and one log line says why."""
    import shutil

    from safetensors.torch import load_file, save_file

    from judge_core.gptq.format import default_g_idx
    from judge_core.gptq.fused import FusedGPTQLinear
    from judge_core.models.linear import SplitLinear
    from judge_core.models.weights import load_qwen3_5

    shutil.copytree(checkpoints["gptq"], tmp_path / "act", dirs_exist_ok=True)
    files = sorted((tmp_path / "act").glob("*.safetensors"))
    assert len(files) == 1
    tensors = load_file(str(files[0]))
    prefix = "model.layers.3.self_attn"
    n_in = tensors[f"{prefix}.q_proj.qweight"].shape[0] * 8
    tensors[f"{prefix}.q_proj.g_idx"] = default_g_idx(n_in, 32)
    tensors[f"{prefix}.k_proj.g_idx"] = default_g_idx(n_in, 32).flip(0).contiguous()   # a scrambled grouping
    tensors[f"{prefix}.v_proj.g_idx"] = default_g_idx(n_in, 32)
    save_file(tensors, str(files[0]), metadata={"format": "pt"})
    config = json.loads((tmp_path / "act" / "config.json").read_text())
    config["quantization_config"]["desc_act"] = True
    (tmp_path / "act" / "config.json").write_text(json.dumps(config))

    with caplog.at_level(logging.INFO, logger="judge_core.gptq.swap"):
        model = load_qwen3_5(tmp_path / "act", dtype=torch.float32, label_ids=LABEL_IDS)
    assert isinstance(model.layers[3].self_attn.qkv_proj, SplitLinear)
    assert isinstance(model.layers[0].linear_attn.in_proj, FusedGPTQLinear)
    why = [r.getMessage() for r in caplog.records if "kept split" in r.getMessage()]
    print("\n" + "\n".join(why))
    assert len(why) == 1 and "act-order g_idx differ" in why[0] and "layers.3.self_attn" in why[0]
