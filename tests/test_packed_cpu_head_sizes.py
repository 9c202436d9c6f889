"""The packed forward on the CPU at the 4B's per-head sizes (attention head_dim 256, Gated DeltaNet
key/value head dim 128) and tiny width: the CPU kernels (blocked gated delta rule, per-prompt SDPA)
against the chunked solve_triangular twin layer by layer, and against transformers end to end, fp32;
bf16 drift against fp32 reported."""

from __future__ import annotations

import dataclasses

import torch

from judge_core.models.batch import PackedBatch
from judge_core.models.weights import load_qwen3_5

LABEL_IDS = [32, 33]
LENGTHS = [1, 7, 63, 64, 65, 130, 3, 257]
HEAD_SIZES_4B = dict(head_dim=256, linear_key_head_dim=128, linear_value_head_dim=128)


def _prompts(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 248_000, (n,), generator=gen).tolist() for n in lengths]


def _gdn_outputs(model, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and every Gated DeltaNet layer's output."""
    outs, hooks = [], []
    for layer in model.layers:
        if layer.layer_type == "linear_attention":
            hooks.append(layer.linear_attn.register_forward_hook(lambda m, a, o: outs.append(o.float().clone())))
    try:
        with torch.inference_mode():
            logits = model(batch)
    finally:
        for h in hooks:
            h.remove()
    return logits, outs


def test_cpu_kernels_against_twin_and_transformers(tiny_ckpt_factory):
    from transformers import AutoModelForCausalLM

    from judge_core.hf_kernels import use_exact_torch_kernels

    path = tiny_ckpt_factory("text", **HEAD_SIZES_4B)
    prompts = _prompts(LENGTHS)
    batch = PackedBatch.from_token_lists(prompts, "cpu")
    model = load_qwen3_5(path, dtype=torch.float32, label_ids=LABEL_IDS)
    fast = model.kernels_for_weights()
    assert (fast.gated_delta, fast.attention) == ("blocked", "sdpa")
    got, got_layers = _gdn_outputs(model, batch)
    model.kernels = dataclasses.replace(fast, gated_delta="torch", attention="naive")
    twin, twin_layers = _gdn_outputs(model, batch)
    for i, (a, b) in enumerate(zip(got_layers, twin_layers)):
        err = (a - b).abs().max().item()
        print(f"GDN layer {i}: blocked vs chunked twin (fp32, 4B head sizes): max |delta| = {err:.3g} "
              f"(output max {b.abs().max().item():.3g})")
        assert err < 1e-4
    d_twin = (got - twin).abs().max().item()

    hf = use_exact_torch_kernels(AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)).eval()
    with torch.inference_mode():
        want = torch.stack([hf(torch.tensor([p])).logits[0, -1, LABEL_IDS] for p in prompts])
    d_hf = (got - want).abs().max().item()
    print(f"packed CPU kernels, fp32 logits: max |delta| vs twin kernels {d_twin:.3g}, vs transformers {d_hf:.3g}")
    assert d_twin < 1e-4 and d_hf < 1e-4

    bf16 = load_qwen3_5(path, dtype=torch.bfloat16, label_ids=LABEL_IDS)
    with torch.inference_mode():
        drift_logits = bf16(batch)
    p = lambda x: 100 * torch.softmax(x.double(), -1)[:, 0]   # noqa: E731
    drift = (p(drift_logits) - p(got)).abs().max().item()
    print(f"packed CPU kernels, bf16 vs fp32: max |delta p1| = {drift:.3g} pp, "
          f"max |delta logit| = {(drift_logits - got).abs().max().item():.3g}")
    assert drift < 5.0
