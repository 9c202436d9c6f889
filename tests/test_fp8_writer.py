"""`judge-core quantize SRC OUT --method fp8`: the written checkpoint re-read with safetensors (dtypes,
shapes, nothing dropped), its config parsed by us and by transformers, both layouts."""

from __future__ import annotations

import json

import pytest
import torch

from judge_core.fp8 import FP8_DTYPE, FP8Config, dequantize_fp8_tensor, write_fp8_checkpoint


def _read_all(path):
    from safetensors import safe_open

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            out.update({k: h.get_tensor(k) for k in h.keys()})
    return out


@pytest.mark.parametrize("layout", ["text", "multimodal"])
def test_written_checkpoint(tiny_ckpt_factory, tmp_path, layout):
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize
    from transformers.utils.quantization_config import FineGrainedFP8Config

    src = tiny_ckpt_factory(layout)
    out = write_fp8_checkpoint(src, tmp_path / "fp8", block=(16, 16))
    before, after = _read_all(src), _read_all(out)
    prefix = "model.language_model." if layout == "multimodal" else "model."
    config = json.loads((out / "config.json").read_text())
    cfg = FP8Config.from_json(config["quantization_config"])
    FineGrainedFP8Config(**config["quantization_config"])     # transformers accepts it as written
    assert cfg.weight_block_size == (16, 16)

    scales = {k for k in after if k.endswith(".weight_scale_inv")}
    assert set(after) - scales == set(before)                    # nothing dropped, nothing renamed
    quantized = {k.removesuffix("_scale_inv") for k in scales}
    for part in ("linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.out_proj", "mlp.down_proj"):
        assert f"{prefix}layers.0.{part}.weight" in quantized
    assert f"{prefix}layers.3.self_attn.q_proj.weight" in quantized
    worst = 0.0
    for key in quantized:
        w, s = after[key], after[key.removesuffix("weight") + "weight_scale_inv"]
        assert w.dtype == FP8_DTYPE and s.dtype == torch.float32
        assert s.shape == (w.shape[0] // 16, w.shape[1] // 16)
        deq = dequantize_fp8_tensor(w, s, (16, 16))
        assert torch.equal(deq, Fp8Dequantize(None)._dequantize_one(w, s, output_dtype=torch.float32))
        ref = before[key].float()
        worst = max(worst, ((deq - ref).abs() / ref.abs().max()).max().item())
    print(f"{layout}: {len(quantized)} weights in fp8; max |W - deq| / max |W| = {worst:.2e}")
    assert worst <= 2.0**-4

    # What stays float is copied bit for bit and named in modules_to_not_convert.
    kept = set(cfg.modules_to_not_convert)
    for key in (f"{prefix}layers.0.linear_attn.in_proj_a", f"{prefix}layers.0.linear_attn.in_proj_b",
                f"{prefix}embed_tokens"):
        assert key in kept and torch.equal(after[f"{key}.weight"], before[f"{key}.weight"])
    for key in (f"{prefix}layers.0.linear_attn.conv1d.weight", f"{prefix}layers.0.linear_attn.A_log",
                f"{prefix}norm.weight"):
        assert torch.equal(after[key], before[key])
    two_d_float = {k.removesuffix(".weight") for k, t in after.items()
                   if k.endswith(".weight") and t.dim() == 2 and t.dtype != FP8_DTYPE}
    assert two_d_float == kept
    if layout == "multimodal":
        assert any(k.startswith("model.visual.") for k in kept)
    assert (out / "tokenizer.json").exists() or (out / "tokenizer_config.json").exists()


def test_whole_blocks_only_and_refusals(tiny_text_ckpt, tmp_path, caplog):
    # the tiny widths (32..128) are no whole 128x128 blocks: a copy labelled fp8 with no fp8 weight is refused
    with pytest.raises(ValueError, match=r"no weight fits the 128x128 block.*\[32, 64\].*\[128, 64\].*"
                                         r"--fp8-block 32 64"):
        write_fp8_checkpoint(tiny_text_ckpt, tmp_path / "b128")
    assert not (tmp_path / "b128").exists()
    # 64x64: most fit, k_proj / v_proj ([32, 64]) do not: written, with a warning that lists them
    out = write_fp8_checkpoint(tiny_text_ckpt, tmp_path / "b64", block=(64, 64))
    cfg = FP8Config.from_json(json.loads((out / "config.json").read_text())["quantization_config"])
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    print(warning)
    assert "stayed in float" in warning and "model.layers.3.self_attn.k_proj [32, 64]" in warning
    assert "model.layers.3.self_attn.k_proj" in cfg.modules_to_not_convert
    assert "model.layers.0.mlp.down_proj" not in cfg.modules_to_not_convert
    assert any(k.endswith("weight_scale_inv") for k in _read_all(out))
    with pytest.raises(ValueError, match="already quantized"):
        write_fp8_checkpoint(out, tmp_path / "again")
    with pytest.raises(ValueError, match="is the source dir"):
        write_fp8_checkpoint(tiny_text_ckpt, tiny_text_ckpt)


def test_cli_method_fp8(tiny_text_ckpt, tmp_path, capsys):
    from judge_core.cli.main import main

    assert main(["quantize", str(tiny_text_ckpt), str(tmp_path / "cli"), "--method", "fp8",
                 "--fp8-block", "32", "32"]) == 0
    assert "wrote" in capsys.readouterr().out
    quant = json.loads((tmp_path / "cli" / "config.json").read_text())["quantization_config"]
    assert quant["quant_method"] == "fp8" and quant["weight_block_size"] == [32, 32]
