"""Loading a pre-quantized FP8 checkpoint: through the packed loader (`load_qwen3_5`) and the hf loader
(`load_hf_model`, both via judge_core/fp8/load.py), and by hand into a transformers model, then back to
FP8Linears on exactly the layers that were fp8 on disk."""

from __future__ import annotations

import pytest
import torch

from judge_core.fp8 import FP8CheckpointReader, FP8Config, FP8Linear, quantize_model_fp8_, write_fp8_checkpoint

BLOCK = (16, 16)


class _RawReader:
    """Checkpoint tensors by their own keys (what a transformers model's state dict uses, text layout)."""

    def __init__(self, path):
        from safetensors import safe_open

        self.path = path
        self._h = [safe_open(str(f), framework="pt") for f in sorted(path.glob("*.safetensors"))]
        self._where = {k: h for h in self._h for k in h.keys()}

    def keys(self):
        return set(self._where)

    def __contains__(self, key):
        return key in self._where

    def shape(self, key):
        return tuple(self._where[key].get_slice(key).get_shape())

    def get(self, key):
        return self._where[key].get_tensor(key)


@pytest.fixture(scope="module")
def fp8_ckpt(tiny_ckpt_factory, tmp_path_factory):
    src = tiny_ckpt_factory("text")
    return src, write_fp8_checkpoint(src, tmp_path_factory.mktemp("fp8-ckpt"), block=BLOCK)


def _config(path):
    from judge_core.checkpoint import read_config

    config = read_config(path)
    return config, FP8Config.from_json(config["quantization_config"])


def test_packed_model_from_fp8_checkpoint(fp8_ckpt):
    from judge_core.checkpoint import TensorReader
    from judge_core.fp8 import FP8FusedLinear
    from judge_core.models.batch import PackedBatch
    from judge_core.models.linear import FusedLinear
    from judge_core.models.weights import load_qwen3_5

    src, out = fp8_ckpt
    _, cfg = _config(out)
    reader = FP8CheckpointReader(TensorReader(out), cfg)
    assert "model.layers.0.linear_attn.in_proj_qkv" in reader.fp8_modules
    assert "model.layers.0.linear_attn.in_proj_a" not in reader.fp8_modules
    assert not any(k.endswith("weight_scale_inv") for k in reader.keys())
    model = load_qwen3_5(out, dtype=torch.float32, label_ids=[32, 33])   # fp8.load.load_fp8_packed
    # Quantize-at-load of the float source with the same blocks gives the same model, bit for bit.
    direct = load_qwen3_5(src, dtype=torch.float32, label_ids=[32, 33])
    n_fused = sum(isinstance(m, FusedLinear) for m in direct.modules())
    fused = [m for m in model.modules() if isinstance(m, FP8FusedLinear)]
    assert n_fused > 0 and len(fused) == n_fused and all(m.fp8 is not None for m in fused)
    quantize_model_fp8_(direct, block=BLOCK, compute="twin")
    prompts = [list(range(5, 40)), list(range(50, 61))]
    with torch.no_grad():
        got = model(PackedBatch.from_token_lists(prompts, "cpu"))
        want = direct(PackedBatch.from_token_lists(prompts, "cpu"))
    err = (got - want).abs().max().item()
    print(f"packed from FP8 checkpoint vs quantize-at-load with block {BLOCK}: max |d| = {err:.2e}")
    assert err == 0.0


def test_transformers_model_from_fp8_checkpoint(fp8_ckpt):
    from transformers import AutoConfig, AutoModelForCausalLM

    from judge_core.loader import load_hf_model
    from judge_core.models.batch import PackedBatch
    from judge_core.models.weights import load_qwen3_5

    _, out = fp8_ckpt
    config, cfg = _config(out)
    reader = FP8CheckpointReader(_RawReader(out), cfg)
    hf_config = AutoConfig.from_pretrained(str(out))
    del hf_config.quantization_config            # we read the tensors ourselves
    model = AutoModelForCausalLM.from_config(hf_config).float().eval()
    state = {k: reader.get(k) for k in reader.keys()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}      # tied to the embedding
    model.tie_weights()
    swapped = quantize_model_fp8_(model, only=reader.fp8_modules, compute="twin")
    assert sorted(swapped) == reader.fp8_modules
    assert isinstance(model.model.layers[0].linear_attn.in_proj_qkv, FP8Linear)

    loaded = load_hf_model(out, dtype=torch.float32, device=torch.device("cpu"))   # fp8.load.load_fp8_hf_model
    assert sorted(n for n, m in loaded.named_modules() if isinstance(m, FP8Linear)) == reader.fp8_modules
    packed = load_qwen3_5(out, dtype=torch.float32, label_ids=[32, 33])
    prompt = list(range(5, 40))
    with torch.no_grad():
        hf_logits = model(torch.tensor([prompt])).logits[0, -1, [32, 33]]
        loaded_logits = loaded(torch.tensor([prompt])).logits[0, -1, [32, 33]]
        packed_logits = packed(PackedBatch.from_token_lists([prompt], "cpu"))[0]
    same = (hf_logits - loaded_logits).abs().max().item()
    err = (hf_logits - packed_logits).abs().max().item()
    print(f"FP8 checkpoint: load_hf_model vs by hand max |d| = {same:.2e}; transformers vs packed "
          f"(both W8A8 twin) max |d| = {err:.2e}")
    assert same == 0.0 and err < 1e-3


def test_reader_refusals(fp8_ckpt):
    from judge_core.checkpoint import TensorReader

    _, out = fp8_ckpt
    _, cfg = _config(out)
    w = torch.zeros(16, 16, dtype=torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="static activation scales"):
        FP8CheckpointReader(TensorReader.from_state_dict({"model.layers.0.mlp.up_proj.weight": w,
                                                          "model.layers.0.mlp.up_proj.input_scale": torch.ones(())}),
                            cfg)
    with pytest.raises(ValueError, match="has no weight_scale_inv"):
        reader = FP8CheckpointReader(TensorReader.from_state_dict({"model.layers.0.mlp.up_proj.weight": w}), cfg)
        reader.get("model.layers.0.mlp.up_proj.weight")
