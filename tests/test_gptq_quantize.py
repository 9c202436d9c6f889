"""Quantizer: the GPTQ algorithm against round-to-nearest, checkpoints it writes, and the judge run on them
against the reference twin run on the dequantized float weights."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors import safe_open

from judge_core.gptq import GPTQLinear, dequantize_checkpoint, is_gptq_checkpoint, load_gptq_model, quantize_checkpoint
from judge_core.gptq.algorithm import quantize_gptq, quantize_rtn
from judge_core.gptq.format import QuantConfig, unpack_cols
from judge_core.checkpoint import checkpoint_files

PAIRS = [
    ("Write a two-line poem about a kettle.",
     "Steam climbs the window like a rumour;\nthe kettle sings what the house won't say.",
     "The kettle is hot. It makes tea."),
    {"instruction": "Name a ship in one word.", "response_1": "Perseverance", "response_2": "Boat"},
    ("Describe fog.", "Fog is the town forgetting itself, street by street.", "Fog is grey air. You cannot see far."),
]

CALIB = dict(calib_n=4, calib_max_tokens=160)


@pytest.fixture(scope="module")
def q_text(tiny_text_ckpt, tmp_path_factory):
    """GPTQ with act-order, asymmetric zeros, group 32, v1 format, from the text layout."""
    return quantize_checkpoint(tiny_text_ckpt, tmp_path_factory.mktemp("q-text"), method="gptq", group_size=32,
                               desc_act=True, sym=False, checkpoint_format="gptq", device="cpu", **CALIB)


@pytest.fixture(scope="module")
def q_mm(tiny_mm_ckpt, tmp_path_factory):
    """GPTQ, symmetric, group 16, v2 format, from the multimodal layout, written in several shards."""
    return quantize_checkpoint(tiny_mm_ckpt, tmp_path_factory.mktemp("q-mm"), method="gptq", group_size=16,
                               sym=True, checkpoint_format="gptq_v2", device="cpu", max_shard_bytes=32 * 1024**2,
                               **CALIB)


def _keys(path):
    keys = {}
    for f in checkpoint_files(path):
        with safe_open(str(f), "pt") as h:
            keys.update({k: h.get_tensor(k) for k in h.keys()})
    return keys


def test_written_checkpoint_layout(q_text, q_mm):
    config = json.loads((q_text / "config.json").read_text())
    quant = config["quantization_config"]
    assert {k: quant[k] for k in ("quant_method", "bits", "group_size", "desc_act", "sym", "checkpoint_format")} == \
        {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": True, "sym": False,
         "checkpoint_format": "gptq"}
    text = _keys(q_text)
    assert text["model.layers.0.mlp.gate_proj.qweight"].shape == (8, 128)
    assert text["model.layers.0.mlp.gate_proj.scales"].dtype == torch.float16
    assert "model.layers.0.mlp.gate_proj.weight" not in text
    # 4-wide projections cannot pack: kept float, and listed as such.
    assert "model.layers.0.linear_attn.in_proj_b.weight" in text
    assert "model.layers.0.linear_attn.in_proj_b" in quant["meta"]["float_layers"]
    # Act-order gives a scrambled g_idx.
    g_idx = text["model.layers.0.mlp.down_proj.g_idx"]
    assert not torch.equal(g_idx, torch.arange(128, dtype=torch.int32) // 32)
    assert torch.equal(torch.bincount(g_idx), torch.full((4,), 32))
    # v1 with asymmetric zeros never stores z = 0 (nibble 15), which readers disagree on.
    for k, t in text.items():
        if k.endswith("qzeros"):
            assert int((unpack_cols(t) == 15).sum()) == 0, k
    # Multimodal: its own layout, the vision tower kept, several shards with an index.
    mm = _keys(q_mm)
    assert "model.language_model.layers.3.self_attn.q_proj.qweight" in mm
    assert any(k.startswith("model.visual.") for k in mm)
    assert (q_mm / "model.safetensors.index.json").exists() and len(checkpoint_files(q_mm)) > 1
    assert (q_mm / "tokenizer.json").exists() and is_gptq_checkpoint(q_mm)


@pytest.mark.parametrize("which", ["q_text", pytest.param("q_mm", marks=pytest.mark.slow)])
def test_judge_on_gptq_matches_reference_on_dequantized(which, request, tmp_path):
    from judge_core import Judge
    from judge_core.reference import ReferenceJudge

    qpath = request.getfixturevalue(which)
    reference = ReferenceJudge.from_pretrained(dequantize_checkpoint(qpath, tmp_path / "float"), dtype=torch.float32)
    want = reference.compare_many(PAIRS)
    assert all(s.ok for s in want)
    for backend in ("hf", "packed"):
        judge = Judge.from_pretrained(qpath, dtype=torch.float32, device="cpu", backend=backend)
        n_gptq = sum(isinstance(m, GPTQLinear) for m in judge.backend.model.modules())
        assert n_gptq > 0, f"{backend} backend holds no GPTQLinear: the checkpoint was not read as GPTQ"
        got = judge.compare_many(PAIRS)
        assert all(s.ok for s in got)
        err = max(abs(a.p1 - b.p1) for a, b in zip(got, want))
        print(f"{which} ({backend} backend, {n_gptq} GPTQ layers): GPTQ judge vs reference on dequantized "
              f"weights, max |delta p1| = {err:.3g} pp")
        assert err <= 1e-3


def test_gptq_beats_round_to_nearest_on_layer_output():
    """GPTQ minimises ||X W^T - X Q^T||: on correlated inputs it must beat RTN at the same scales grid."""
    gen = torch.Generator().manual_seed(0)
    n_in, n_out, n_tok = 128, 64, 2048
    mix = torch.randn(n_in, n_in, generator=gen) / n_in**0.5
    x = torch.randn(n_tok, n_in, generator=gen) @ mix + 0.1 * torch.randn(n_tok, n_in, generator=gen)
    w = torch.randn(n_out, n_in, generator=gen) / n_in**0.5
    h = 2 * x.t() @ x / n_tok
    y = x @ w.t()
    for cfg in (QuantConfig(group_size=32), QuantConfig(group_size=-1, sym=False, desc_act=True)):
        rtn = (x @ quantize_rtn(w, cfg).dequantize().t() - y).norm().item()
        gptq = (x @ quantize_gptq(w, h, cfg).dequantize().t() - y).norm().item()
        print(f"{cfg}: output error RTN {rtn:.4g}, GPTQ {gptq:.4g} (ratio {gptq / rtn:.3f})")
        assert gptq < 0.8 * rtn


def test_gptq_of_concatenated_rows_equals_separate_layers():
    """The quantizer runs Linears sharing an input as one matrix: rows are independent given H."""
    from judge_core.gptq.algorithm import split_rows

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(512, 64, generator=gen)
    h = 2 * x.t() @ x / 512
    w1, w2 = torch.randn(24, 64, generator=gen), torch.randn(40, 64, generator=gen)
    cfg = QuantConfig(group_size=16, desc_act=True, sym=False)
    joint = split_rows(quantize_gptq(torch.cat([w1, w2]), h, cfg), [24, 40])
    for part, w in zip(joint, (w1, w2)):
        alone = quantize_gptq(w, h, cfg)
        assert torch.equal(part.q, alone.q) and torch.equal(part.scales, alone.scales)
        assert torch.equal(part.zeros, alone.zeros) and torch.equal(part.g_idx, alone.g_idx)


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_layer_with_fp16_overflowing_scales_stays_float(tiny_text_ckpt, tmp_path, caplog, method):
    """DESIGN §4: some Qwen3.5-4B tensors hold values up to 1e36; such a layer must stay float, said aloud."""
    from safetensors.torch import save_file

    src = tmp_path / "src"
    src.mkdir()
    for f in tiny_text_ckpt.iterdir():
        if f.suffix != ".safetensors":
            (src / f.name).write_bytes(f.read_bytes())
    tensors = _keys(tiny_text_ckpt)
    bad = "model.layers.2.mlp.gate_proj.weight"
    tensors[bad] = tensors[bad].clone()
    tensors[bad][3, 5] = 1e20
    save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="judge_core.gptq"):
        out = quantize_checkpoint(src, tmp_path / "q", method=method, group_size=16, device="cpu", **CALIB)
    for r in caplog.records:
        print(f"warning: {r.getMessage()}")
    assert any("model.layers.2.mlp.gate_proj" in r.getMessage() and "fp16" in r.getMessage() for r in caplog.records)
    written = _keys(out)
    assert bad in written and "model.layers.2.mlp.gate_proj.qweight" not in written
    assert written[bad][3, 5] == torch.tensor(1e20)
    model = load_gptq_model(out, dtype=torch.float32)
    assert type(model.model.layers[2].mlp.gate_proj) is torch.nn.Linear
    assert isinstance(model.model.layers[2].mlp.up_proj, GPTQLinear)  # its input partner is still quantized


def test_quantize_options_are_checked(tiny_text_ckpt, tmp_path):
    with pytest.raises(ValueError, match="desc_act"):
        quantize_checkpoint(tiny_text_ckpt, tmp_path / "a", method="rtn", desc_act=True)
    with pytest.raises(ValueError, match="method 'awq'"):
        quantize_checkpoint(tiny_text_ckpt, tmp_path / "b", method="awq")
    with pytest.raises(ValueError, match="checkpoint_format='v3'"):
        quantize_checkpoint(tiny_text_ckpt, tmp_path / "c", checkpoint_format="v3")


def test_cli_quantize_round_to_nearest(tiny_text_ckpt, tmp_path):
    from judge_core.cli.main import main

    out = tmp_path / "q"
    assert main(["quantize", str(tiny_text_ckpt), str(out), "--method", "rtn", "--group-size", "-1", "--asym",
                 "--format", "gptq_v2"]) == 0
    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (quant["group_size"], quant["sym"], quant["checkpoint_format"], quant["meta"]["method"]) == \
        (-1, False, "gptq_v2", "rtn")
    model = load_gptq_model(out, dtype=torch.float32)
    layer = model.model.layers[1].mlp.down_proj
    assert isinstance(layer, GPTQLinear) and layer.scales.shape == (1, 64)
    # RTN of the source weight, one group per row: error at most half a step per element.
    with safe_open(str(tiny_text_ckpt / "model.safetensors"), "pt") as f:
        w = f.get_tensor("model.layers.1.mlp.down_proj.weight")
    err = (layer.dequantized_weight(torch.float32) - w).abs()
    step = layer.scales.float().t()  # [out, 1]
    print(f"RTN max |delta| / step = {(err / step).max().item():.3g}")
    assert (err <= step / 2 + 1e-6).all()


def test_tiny_source_is_the_embedded_judge():
    from judge_core.embedded import default_checkpoint
    from judge_core.gptq.quantize import resolve_source

    assert resolve_source("tiny") == default_checkpoint()
