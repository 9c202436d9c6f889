"""GPTQ loader on hand-made checkpoints: random 4-bit codes put into the tiny judges' layers.

Each checkpoint is two shards plus model.safetensors.index.json: a float shard shared by all
variants (embeddings, norms, the layers left in float) and a small shard with the GPTQ tensors,
so every format variant and every broken checkpoint costs only its few small tensors.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from judge_core.gptq import GPTQLinear, dequantize_checkpoint, load_gptq_model
from judge_core.gptq.format import QuantConfig, default_g_idx, pack_cols, pack_rows, stored_zeros

# Model names (text layout) of the layers given GPTQ tensors: shapes [out, in] 128x64, 64x64, 64x128, 128x64.
QUANT_LAYERS = ["model.layers.0.linear_attn.in_proj_qkv", "model.layers.0.linear_attn.out_proj",
                "model.layers.1.mlp.down_proj", "model.layers.3.self_attn.q_proj"]


def ckpt_prefix(layout: str) -> str:
    return "model.language_model." if layout == "multimodal" else "model."


def codes_for(n_out, n_in, cfg: QuantConfig, seed):
    """Random codes -> (checkpoint tensors, W [out, in] float64 straight from the codes)."""
    gen = torch.Generator().manual_seed(seed)
    n_groups = cfg.n_groups(n_in)
    q = torch.randint(0, 16, (n_in, n_out), generator=gen, dtype=torch.int32)
    z = (torch.full((n_groups, n_out), 8, dtype=torch.int32) if cfg.sym
         else torch.randint(0, 16, (n_groups, n_out), generator=gen, dtype=torch.int32))
    scales = (torch.rand(n_groups, n_out, generator=gen) * 0.05 + 1e-3).half()
    g_idx = default_g_idx(n_in, cfg.group_size)
    if cfg.desc_act:
        g_idx = g_idx[torch.randperm(n_in, generator=gen)]
    w = ((q - z[g_idx.long()]).double() * scales[g_idx.long()].double()).t()
    return {"qweight": pack_rows(q), "qzeros": pack_cols(stored_zeros(z, cfg)), "scales": scales, "g_idx": g_idx}, w


@pytest.fixture(scope="module")
def float_shards(tiny_text_ckpt, tiny_mm_ckpt, tmp_path_factory):
    """layout -> (source dir, float shard path without the quantized layers' weights)."""
    out = {}
    for layout, src in (("text", tiny_text_ckpt), ("multimodal", tiny_mm_ckpt)):
        drop = {ckpt_prefix(layout) + n[len("model."):] + ".weight" for n in QUANT_LAYERS}
        with safe_open(str(Path(src) / "model.safetensors"), "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys() if k not in drop}
        shard = tmp_path_factory.mktemp(f"float-{layout}") / "model-00001-of-00002.safetensors"
        save_file(tensors, str(shard), metadata={"format": "pt"})
        out[layout] = (Path(src), shard)
    return out


def make_checkpoint(float_shards, out: Path, layout: str, quant: dict, *, mutate=None) -> dict[str, torch.Tensor]:
    """Write a GPTQ checkpoint; returns model name -> expected W [out, in]. mutate(tensors) may break it."""
    src, shard = float_shards[layout]
    # Codes are drawn for a valid reading of `quant`; the invalid values still reach config.json.
    valid = dict(quant, bits=4)
    if valid.get("checkpoint_format", "gptq") not in ("gptq", "gptq_v2"):
        valid["checkpoint_format"] = "gptq"
    if valid.get("group_size", 16) not in (16, 32, -1):
        valid["group_size"] = 16
    cfg = QuantConfig.from_json(dict(valid, group_size=valid.get("group_size", 16)))
    out.mkdir(parents=True)
    shapes = {"in_proj_qkv": (128, 64), "out_proj": (64, 64), "down_proj": (64, 128), "q_proj": (128, 64)}
    qtensors, expected = {}, {}
    for seed, name in enumerate(QUANT_LAYERS):
        n_out, n_in = shapes[name.rsplit(".", 1)[1]]
        tensors, w = codes_for(n_out, n_in, cfg, seed)
        prefix = ckpt_prefix(layout) + name[len("model."):]
        qtensors.update({f"{prefix}.{k}": v for k, v in tensors.items()})
        expected[name] = w
    if mutate:
        mutate(qtensors)
    os.symlink(shard, out / shard.name)
    save_file(qtensors, str(out / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    with safe_open(str(shard), "pt") as f:
        weight_map = {k: shard.name for k in f.keys()}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in qtensors})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = dict({"quant_method": "gptq", "bits": 4}, **quant)
    (out / "config.json").write_text(json.dumps(config))
    for f in src.iterdir():
        if f.name.startswith("tokenizer") or f.suffix == ".jinja":
            shutil.copy2(f, out / f.name)
    return expected


VARIANTS = [
    ("text", dict(group_size=16, desc_act=False, sym=True, checkpoint_format="gptq")),
    ("text", dict(group_size=32, desc_act=True, sym=False, checkpoint_format="gptq")),
    ("text", dict(group_size=-1, desc_act=False, sym=False, checkpoint_format="gptq_v2")),
    ("multimodal", dict(group_size=32, desc_act=False, sym=True, checkpoint_format="gptq_v2")),
    ("multimodal", dict(group_size=16, desc_act=True, sym=False, checkpoint_format="gptq")),
]


@pytest.mark.parametrize("layout,quant", VARIANTS, ids=lambda v: v if isinstance(v, str) else
                         f"gs{v['group_size']}-{'act' if v['desc_act'] else 'seq'}-{'sym' if v['sym'] else 'asym'}"
                         f"-{v['checkpoint_format']}")
def test_load_variants(float_shards, tmp_path, layout, quant):
    expected = make_checkpoint(float_shards, tmp_path / "q", layout, quant)
    model = load_gptq_model(tmp_path / "q", dtype=torch.float32)
    for name, w in expected.items():
        layer = model.get_submodule(name)
        assert isinstance(layer, GPTQLinear), name
        err = (layer.dequantized_weight(torch.float64, reference=True) - w).abs().max().item()
        print(f"{layout} {quant}: {name} max |delta| vs codes = {err:.3g}")
        assert err == 0
    # Layers the checkpoint keeps in float stay nn.Linear, including the 4-wide ones that cannot pack.
    src_dir, _ = float_shards[layout]
    with safe_open(str(src_dir / "model.safetensors"), "pt") as f:
        key = ckpt_prefix(layout) + "layers.0.linear_attn.in_proj_b.weight"
        b_src = f.get_tensor(key)
    b = model.get_submodule("model.layers.0.linear_attn.in_proj_b")
    assert type(b) is torch.nn.Linear and torch.equal(b.weight, b_src)
    assert type(model.get_submodule("model.layers.2.mlp.up_proj")) is torch.nn.Linear
    # Tied head, nothing left on meta, and the vision tower skipped.
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert not any(p.is_meta for p in model.parameters()) and not any(b.is_meta for b in model.buffers())
    assert not any("visual" in n for n, _ in model.named_parameters())


def test_forward_matches_dequantized_float_checkpoint(float_shards, tmp_path):
    from transformers import AutoModelForCausalLM

    make_checkpoint(float_shards, tmp_path / "q", "text", dict(group_size=16, desc_act=True, sym=False))
    gptq = load_gptq_model(tmp_path / "q", dtype=torch.float32)
    dense = AutoModelForCausalLM.from_pretrained(str(dequantize_checkpoint(tmp_path / "q", tmp_path / "f")),
                                                 dtype=torch.float32).eval()
    ids = torch.randint(0, 5000, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = gptq(ids).logits, dense(ids).logits
    err = (a - b).abs().max().item()
    print(f"GPTQ model vs dequantized float checkpoint: logits max |delta| = {err:.3g}")
    assert err < 1e-4
    # bf16 compute: the weight is rounded to bf16 exactly as a bf16 load of the float checkpoint rounds it.
    gptq16 = load_gptq_model(tmp_path / "q", dtype=torch.bfloat16)
    dense16 = AutoModelForCausalLM.from_pretrained(str(tmp_path / "f"), dtype=torch.bfloat16).eval()
    with torch.no_grad():
        c, d = gptq16(ids).logits.float(), dense16(ids).logits.float()
    err16 = (c - d).abs().max().item()
    print(f"bf16 GPTQ model vs bf16 dequantized checkpoint: logits max |delta| = {err16:.3g}")
    assert gptq16.model.layers[0].linear_attn.in_proj_qkv.scales.dtype == torch.float16
    assert err16 < 1e-2


def _drop(key_part):
    def mutate(t):
        for k in [k for k in t if key_part in k]:
            del t[k]
    return mutate


def _replace(key_part, fn):
    def mutate(t):
        for k in [k for k in t if k.endswith(key_part)]:
            t[k] = fn(t[k])
    return mutate


@pytest.mark.parametrize("quant,mutate,message", [
    (dict(bits=8), None, r"bits=8"),
    (dict(checkpoint_format="awq"), None, r"checkpoint_format='awq'"),
    (dict(group_size=48), None,
     r"model.layers.0.linear_attn.out_proj: in_features=64 does not divide by group_size=48"),
    (dict(group_size=16), _replace("layers.1.mlp.down_proj.qweight", lambda t: torch.cat([t, t])),
     r"model.layers.1.mlp.down_proj: qweight shape \(32, 64\) != expected \(16, 64\).*8-bit"),
    (dict(group_size=16), _replace("layers.3.self_attn.q_proj.scales", lambda t: t[:2]),
     r"model.layers.3.self_attn.q_proj: scales shape \(2, 128\) != expected \(4, 128\)"),
    (dict(group_size=16), _replace("layers.0.linear_attn.out_proj.g_idx", lambda t: t + 3),
     r"model.layers.0.linear_attn.out_proj: g_idx holds group 6, outside 0..3"),
    (dict(group_size=16), _drop("layers.0.linear_attn.out_proj.qzeros"),
     r"model.layers.0.linear_attn.out_proj.qzeros is missing"),
], ids=["bits8", "format", "group-divide", "qweight-shape", "scales-shape", "g_idx-range", "no-qzeros"])
def test_unsupported_or_broken_checkpoints_fail_at_load(float_shards, tmp_path, quant, mutate, message):
    make_checkpoint(float_shards, tmp_path / "q", "text", quant, mutate=mutate)
    with pytest.raises(ValueError, match=message) as e:
        load_gptq_model(tmp_path / "q", dtype=torch.float32)
    print(f"error: {e.value}")


def test_missing_float_tensor_is_named(float_shards, tmp_path):
    expected = make_checkpoint(float_shards, tmp_path / "q", "text", dict(group_size=16))
    assert expected
    # A quantized layer stored without its qweight falls back to its float weight, which is absent.
    index = json.loads((tmp_path / "q" / "model.safetensors.index.json").read_text())
    path = tmp_path / "q" / "model-00002-of-00002.safetensors"
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("model.layers.1.mlp.down_proj.")}
    save_file(tensors, str(path))
    index["weight_map"] = {k: v for k, v in index["weight_map"].items()
                           if not k.startswith("model.layers.1.mlp.down_proj.")}
    (tmp_path / "q" / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"does not provide 1 model tensors.*model.layers.1.mlp.down_proj.weight"):
        load_gptq_model(tmp_path / "q", dtype=torch.float32)
