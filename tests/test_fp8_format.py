"""The FP8 quantization_config: what Qwen / DeepSeek FP8 releases write parses; anything we cannot read
is an error naming the value."""

from __future__ import annotations

import pytest

from judge_core.fp8 import FP8Config, is_fp8_config

QWEN_FP8 = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
            "modules_to_not_convert": ["lm_head", "model.language_model.embed_tokens",
                                       "model.language_model.layers.0.linear_attn.in_proj_a"]}


def test_qwen_and_deepseek_style_configs_parse():
    cfg = FP8Config.from_json(QWEN_FP8)
    assert cfg.weight_block_size == (128, 128) and cfg.activation_scheme == "dynamic" and cfg.fmt == "e4m3"
    assert cfg.modules_to_not_convert == tuple(QWEN_FP8["modules_to_not_convert"])
    # DeepSeek-V3 style: no fmt, no skip list; vLLM's `ignored_layers` is an alias.
    ds = FP8Config.from_json({"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
                              "ignored_layers": ["lm_head"]})
    assert ds.modules_to_not_convert == ("lm_head",)
    per_tensor = FP8Config.from_json({"quant_method": "FP8", "activation_scheme": "dynamic"})
    assert per_tensor.weight_block_size is None
    assert is_fp8_config(QWEN_FP8) and not is_fp8_config({"quant_method": "gptq"}) and not is_fp8_config(None)


def test_round_trip_and_transformers_reads_what_we_write():
    from transformers.utils.quantization_config import FineGrainedFP8Config

    cfg = FP8Config(weight_block_size=(128, 128), modules_to_not_convert=("lm_head",))
    assert FP8Config.from_json(cfg.to_json()) == cfg
    hf = FineGrainedFP8Config(**cfg.to_json())
    assert hf.quant_method == "fp8" and list(hf.weight_block_size) == [128, 128]
    assert hf.activation_scheme == "dynamic" and hf.modules_to_not_convert == ["lm_head"]
    assert "weight_block_size" not in FP8Config(weight_block_size=None).to_json()


@pytest.mark.parametrize("change, named", [
    ({"fmt": "e5m2"}, "fmt='e5m2'"),
    ({"activation_scheme": "static"}, "activation_scheme='static'"),
    ({"weight_block_size": [128]}, "weight_block_size=[128]"),
    ({"weight_block_size": [128, 0]}, "weight_block_size=[128, 0]"),
    ({"weight_block_size": [128, 128.0]}, "weight_block_size=[128, 128.0]"),
    ({"scale_fmt": "ue8m0"}, "scale_fmt='ue8m0'"),
    ({"quant_method": "compressed-tensors"}, "compressed-tensors"),
    ({"quant_method": "gptq"}, "quant_method='gptq'"),
    ({"modules_to_not_convert": "lm_head"}, "modules_to_not_convert='lm_head'"),
    ({"modules_to_convert": ["embed_tokens"]}, "modules_to_convert=['embed_tokens']"),
    ({"expert_dtype": "fp4"}, "expert_dtype='fp4'"),
])
def test_unsupported_values_are_errors_naming_them(change, named):
    with pytest.raises(ValueError) as err:
        FP8Config.from_json(dict(QWEN_FP8, **change), where="ckpt/config.json")
    print(f"{change} -> {err.value}")
    assert named in str(err.value) and "ckpt/config.json" in str(err.value)
