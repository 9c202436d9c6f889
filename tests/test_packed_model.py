"""Our packed Qwen3.5 forward against transformers, one prompt at a time, in float32.

A packed batch mixes 1-token prompts, chunk-boundary lengths (63, 64, 65) and a long prompt, so any
state leaking across prompts (Gated DeltaNet state, conv window, attention) shows up as an error.
"""

from __future__ import annotations

import pytest
import torch

from judge_core.models.batch import PackedBatch
from judge_core.models.weights import load_qwen3_5

LABEL_IDS = [32, 33]           # "A", "B"
LENGTHS = [1, 7, 63, 64, 65, 1, 130, 2, 200, 1]


def _prompts(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 248_000, (n,), generator=gen).tolist() for n in lengths]


def _p1(logits: torch.Tensor) -> torch.Tensor:
    """P(A) in percent from [N, 2] candidate logits."""
    return 100 * torch.softmax(logits.double(), dim=-1)[:, 0]


_HF: dict = {}


def _hf_logits(path, prompts):
    from transformers import AutoModelForCausalLM

    from judge_core.hf_kernels import use_exact_torch_kernels

    if path not in _HF:
        _HF[path] = use_exact_torch_kernels(AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)).eval()
    model = _HF[path]
    with torch.inference_mode():
        return torch.stack([model(torch.tensor([p])).logits[0, -1, LABEL_IDS] for p in prompts])


@pytest.mark.parametrize("layout", ["text", "multimodal"])
def test_packed_matches_transformers(tiny_ckpt_factory, layout):
    path = tiny_ckpt_factory(layout)
    model = load_qwen3_5(path, dtype=torch.float32, label_ids=LABEL_IDS)
    prompts = _prompts(LENGTHS)
    with torch.inference_mode():
        got = model(PackedBatch.from_token_lists(prompts, "cpu"))
    want = _hf_logits(path, prompts)
    d_logit = (got - want).abs().max().item()
    d_p1 = (_p1(got) - _p1(want)).abs().max().item()
    print(f"\n[{layout}] packed vs transformers per prompt (fp32, {len(prompts)} prompts, lengths {LENGTHS}): "
          f"max |delta logit| = {d_logit:.3g}, max |delta p1| = {d_p1:.3g} pp")
    assert d_p1 <= 1e-3 and d_logit <= 1e-4
    # the random judge has opinions, so the comparison can tell right from wrong
    assert (_p1(want) - 50).abs().max() > 1.0


def test_batch_companions_do_not_matter(tiny_text_ckpt):
    """A prompt's logits are the same alone, first, last, or between others (no leak either way)."""
    model = load_qwen3_5(tiny_text_ckpt, dtype=torch.float32, label_ids=LABEL_IDS)
    prompts = _prompts([65, 1, 130, 3, 64], seed=3)
    with torch.inference_mode():
        together = model(PackedBatch.from_token_lists(prompts, "cpu"))
        alone = torch.cat([model(PackedBatch.from_token_lists([p], "cpu")) for p in prompts])
        shuffled_order = [4, 2, 0, 3, 1]
        shuffled = model(PackedBatch.from_token_lists([prompts[i] for i in shuffled_order], "cpu"))
    d_alone = (together - alone).abs().max().item()
    d_shuffled = (together[shuffled_order] - shuffled).abs().max().item()
    print(f"\npacked together vs alone: max |delta logit| = {d_alone:.3g}; vs shuffled: {d_shuffled:.3g}")
    assert d_alone <= 1e-5 and d_shuffled <= 1e-5


def test_bf16_against_fp32(tiny_text_ckpt):
    """bf16 is reported, not held to the fp32 tolerance (the bench reports it on the 4B shape)."""
    prompts = _prompts(LENGTHS, seed=5)
    outs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = load_qwen3_5(tiny_text_ckpt, dtype=dtype, label_ids=LABEL_IDS)
        assert model.layers[0].linear_attn.A_log.dtype == torch.float32       # kept fp32 in every dtype
        with torch.inference_mode():
            outs[dtype] = model(PackedBatch.from_token_lists(prompts, "cpu"))
    d_p1 = (_p1(outs[torch.bfloat16]) - _p1(outs[torch.float32])).abs().max().item()
    print(f"\nbf16 vs fp32 packed (tiny model): max |delta p1| = {d_p1:.3g} pp")
    assert outs[torch.bfloat16].dtype == torch.float32
    # measured 2.3 pp on this random tiny model (its logits are near ties, so bf16 rounding shows); a
    # wrong bf16 path (a weight or state left in the wrong dtype, a missing norm) moves p1 by tens of pp
    assert 0 < d_p1 < 5.0


def test_fusions_and_config(tiny_mm_ckpt):
    from judge_core.models.linear import FusedLinear
    from judge_core.models.qwen3_5 import Qwen3_5Args
    from judge_core.checkpoint import read_config

    model = load_qwen3_5(tiny_mm_ckpt, dtype=torch.float32, label_ids=LABEL_IDS)
    args = model.args
    assert args.rotary_dim == 4 and args.layer_types.count("full_attention") == 1
    attn = model.layers[3].self_attn
    assert isinstance(attn.qkv_proj, FusedLinear) and attn.qkv_proj.weight.shape == (2 * 64 + 32 + 32, 64)
    assert model.layers[0].linear_attn.in_proj.weight.shape == (128 + 64 + 4 + 4, 64)
    assert model.layers[0].mlp.gate_up_proj.weight.shape == (256, 64)
    # the label rows are the tied embedding's rows of the label tokens
    assert torch.equal(model.label_rows, model.embed_tokens.weight[LABEL_IDS])
    with pytest.raises(ValueError, match="not a Qwen3.5 config: model_type='llama'"):
        Qwen3_5Args.from_config({"model_type": "llama"})
    config = read_config(tiny_mm_ckpt)
    config["text_config"]["rope_parameters"]["rope_type"] = "yarn"
    with pytest.raises(ValueError, match="rope_type='yarn'"):
        Qwen3_5Args.from_config(config)
    with pytest.raises(ValueError, match="empty"):
        PackedBatch.from_token_lists([[1, 2], []], "cpu")


def test_batch_layout():
    batch = PackedBatch.from_token_lists([[5], [6, 7, 8], [9, 10]], "cpu")
    assert batch.input_ids.tolist() == [5, 6, 7, 8, 9, 10]
    assert batch.positions.tolist() == [0, 0, 1, 2, 0, 1]
    assert batch.cu_seqlens.tolist() == [0, 1, 4, 6] and batch.bounds == [0, 1, 4, 6]
    assert batch.last_rows.tolist() == [0, 3, 5] and batch.max_seqlen == 3


def test_from_in_memory_transformers_model():
    """Benches build the 4B shape in memory (no checkpoint): the same model from a state dict."""
    from judge_core.embedded import build_model
    from judge_core.models.weights import from_hf_model

    prompts = _prompts([1, 66, 9], seed=7)
    for layout in ("text", "multimodal"):
        hf = build_model(layout, seed=4)
        model = from_hf_model(hf, label_ids=LABEL_IDS)
        with torch.inference_mode():
            got = model(PackedBatch.from_token_lists(prompts, "cpu"))
            want = torch.stack([hf(torch.tensor([p])).logits[0, -1, LABEL_IDS] for p in prompts])
        d_logit = (got - want).abs().max().item()
        print(f"\n[{layout}] packed from in-memory model vs that model: max |delta logit| = {d_logit:.3g}")
        assert d_logit <= 1e-4
    from judge_core.backends.packed import PackedBackend

    backend = PackedBackend.from_hf_model(hf, label_ids=LABEL_IDS)
    assert backend.name == "packed" and backend.dtype == torch.float32 and backend.device.type == "cpu"
    assert torch.allclose(backend.candidate_logits(prompts), got, atol=1e-6)
