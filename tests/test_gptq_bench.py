"""Bench helpers: the 4-bit size of the 4B shape, and in-place quantization agreeing with the checkpoint path."""

from __future__ import annotations

import torch

from judge_core.embedded import build_model, qwen3_5_text_config
from judge_core.gptq import GPTQLinear, load_gptq_model, quantize_checkpoint
from bench.gptq_rows import bench_gptq_rows, gptq_weight_bytes, quantize_in_place
from judge_core.gptq.format import QuantConfig


def test_weight_bytes_of_the_4b_shape():
    sizes = gptq_weight_bytes(qwen3_5_text_config("4b"), group_size=128)
    print(f"4B weights: BF16 {sizes['dense_bytes'] / 1e9:.3f} GB, GPTQ-4bit g128 {sizes['gptq_bytes'] / 1e9:.3f} GB "
          f"({sizes['gptq_bytes'] / 2**30:.3f} GiB); float params {sizes['float_params'] / 1e6:.1f}M")
    assert abs(sizes["dense_bytes"] / 1e9 - 8.41) < 0.02       # DESIGN §2: 4.21B params
    assert sizes["gptq_bytes"] <= 3.0 * 2**30                   # issue target: <= 3.0 GB (binary)
    assert sizes["quantized_params"] == 3_569_090_560  # every decoder Linear (all divide by 8)


def test_quantize_in_place_matches_checkpoint_route(tiny_text_ckpt, tmp_path):
    cfg = QuantConfig(group_size=16)
    model = build_model("text", seed=0)  # the weights of tiny_text_ckpt
    n = quantize_in_place(model, cfg)
    loaded = load_gptq_model(quantize_checkpoint(tiny_text_ckpt, tmp_path / "q", method="rtn", group_size=16,
                                                 device="cpu"), dtype=torch.float32)
    assert n == sum(isinstance(m, GPTQLinear) for m in loaded.modules()) == 25
    ids = torch.randint(0, 5000, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (model(ids).logits - loaded(ids).logits).abs().max().item()
    print(f"in-place RTN vs checkpoint RTN: logits max |delta| = {err:.3g}")
    assert err == 0


def test_bench_rows_on_cpu_tiny():
    rows = bench_gptq_rows("tiny", device="cpu", tokens=128, seq_len=32, n_batches=1, group_size=16, repeats=1)
    bf16, gptq = rows
    print(f"tiny CPU bench rows: {rows}")
    assert (bf16["system"], gptq["system"]) == ("bf16", "gptq-rtn-g16")
    assert gptq["quantized_layers"] == 25 and bf16["tokens"] == gptq["tokens"] == 128
    # 4-bit RTN at group 16 on the random tiny model (near-tie logits): measured mean 8.1 pp, max 18.3 pp;
    # bounds ~2x the measured figures, tighter than the old "< 100" that no result could fail
    assert 0 < gptq["p1_drift_mean_pp"] < 20 and gptq["p1_drift_max_pp"] < 40
    assert gptq["tokens_per_s"] > 0 and gptq["dequant_seconds_per_forward"] > 0
