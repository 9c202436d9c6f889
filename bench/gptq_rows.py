"""Numbers for the GPTQ rows of the bench: weight memory, throughput and p1 drift next to BF16.

`gptq_weight_bytes(config)` counts exactly what a 4-bit checkpoint of a shape holds (no GPU needed).
`bench_gptq_rows(...)` builds a random model of the shape on the GPU, times BF16 forwards at a token
budget, converts the same model in place to GPTQ (RTN, so no data is needed), times it again, and
reports the drift of the two-way P(A) between the two. The bench suite (bench/) decides where the rows go.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from judge_core.gptq.format import QuantConfig


def _packed_linear_bytes(n_in: int, n_out: int, n_groups: int) -> int:
    # qweight 4 bits per weight, scales fp16 and qzeros 4 bits per (group, column), g_idx int32 per row
    return n_in * n_out // 2 + n_groups * n_out * 2 + n_groups * n_out // 2 + n_in * 4


def gptq_weight_bytes(config, *, group_size: int = 128, dtype_bytes: int = 2) -> dict:
    """{dense_bytes, gptq_bytes, quantized_params, float_params} of a text model config (float part in
    `dtype_bytes`, tied embeddings counted once), computed on the meta device."""
    from transformers import AutoModelForCausalLM

    from judge_core.loader import parameters_on_meta
    from judge_core.gptq.sequential import quantizable_linears

    with parameters_on_meta():
        model = AutoModelForCausalLM.from_config(config)
    cfg = QuantConfig(group_size=group_size)
    targets, _ = quantizable_linears(model, cfg)
    quantized = {id(m.weight) for m in targets.values()}
    dense = sum(p.numel() for p in model.parameters()) * dtype_bytes
    gptq = sum(_packed_linear_bytes(m.in_features, m.out_features, cfg.n_groups(m.in_features))
               for m in targets.values())
    float_params = sum(p.numel() for p in model.parameters() if id(p) not in quantized)
    return {"dense_bytes": dense, "gptq_bytes": gptq + float_params * dtype_bytes,
            "quantized_params": sum(m.weight.numel() for m in targets.values()), "float_params": float_params}


@torch.no_grad()
def quantize_in_place(model: nn.Module, cfg: QuantConfig) -> int:
    """Swap every quantizable Linear of an in-memory model for a GPTQLinear (RTN); returns how many."""
    from judge_core.gptq.algorithm import pack_layer, quantize_rtn
    from judge_core.gptq.linear import GPTQLinear
    from judge_core.gptq.sequential import quantizable_linears

    targets, _ = quantizable_linears(model, cfg)
    for name, linear in targets.items():
        layer = GPTQLinear.from_packed(pack_layer(quantize_rtn(linear.weight, cfg), cfg), cfg, bias=linear.bias,
                                       device=linear.weight.device)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
    return len(targets)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _time_forward(model, batches, label_ids, device, repeats: int):
    """(P(A) per row [rows], seconds per batch pass, peak bytes during the passes)."""
    p_a = []
    for ids in batches:  # warm-up, and the probabilities
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1, label_ids].float()
        p_a.append(torch.softmax(logits, dim=-1)[:, 0].cpu())
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(repeats):
        for ids in batches:
            model(input_ids=ids, use_cache=False, logits_to_keep=1)
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return torch.cat(p_a), seconds, peak


def _allocated(device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


@torch.no_grad()
def bench_gptq_rows(size: str = "4b", *, device="cuda", tokens: int = 32768, seq_len: int = 4096,
                    n_batches: int = 2, group_size: int = 128, repeats: int = 3, seed: int = 0) -> list[dict]:
    """Rows {system, tokens, seq_len, seconds, tokens_per_s, weight_bytes, peak_bytes, ...} for BF16 and
    GPTQ-RTN on a random model of shape `size` ("4b" or "tiny"), through the transformers model.

    Batches are `tokens // seq_len` rows of `seq_len` random ids. The GPTQ row adds its throughput ratio
    to BF16, the time spent dequantizing per forward, and max/mean |P(A) drift| in percentage points.
    """
    from judge_core.embedded import build_model, tokenizer_dir
    from judge_core.specs import load_spec
    from judge_core.specs.render import label_token_ids
    from judge_core.gptq.linear import GPTQLinear

    from transformers import AutoTokenizer

    device = torch.device(device)
    label_ids = label_token_ids(AutoTokenizer.from_pretrained(str(tokenizer_dir())), load_spec())
    dtype = torch.bfloat16
    base = _allocated(device)
    model = build_model("text", size=size, seed=seed, dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(seed)
    rows = max(1, tokens // seq_len)
    batches = [torch.randint(0, 200000, (rows, seq_len), generator=gen).to(device) for _ in range(n_batches)]
    n_tokens = rows * seq_len * n_batches
    cfg = QuantConfig(group_size=group_size)
    common = {"size": size, "tokens": rows * seq_len, "seq_len": seq_len, "device": str(device)}

    weight_bf16 = _allocated(device) - base
    p_bf16, sec_bf16, peak_bf16 = _time_forward(model, batches, label_ids, device, repeats)
    bf16_row = dict(common, system="bf16", seconds=sec_bf16, tokens_per_s=n_tokens / sec_bf16,
                    weight_bytes=weight_bf16, peak_bytes=peak_bf16)

    n_layers = quantize_in_place(model, cfg)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    weight_gptq = _allocated(device) - base
    layers = [m for m in model.modules() if isinstance(m, GPTQLinear)]
    _sync(device)
    start = time.perf_counter()
    for layer in layers:
        layer.dequantized_weight_t(dtype)
    _sync(device)
    dequant_seconds = time.perf_counter() - start
    p_gptq, sec_gptq, peak_gptq = _time_forward(model, batches, label_ids, device, repeats)
    drift = (p_gptq - p_bf16).abs() * 100
    gptq_row = dict(common, system=f"gptq-rtn-g{group_size}", seconds=sec_gptq, tokens_per_s=n_tokens / sec_gptq,
                    weight_bytes=weight_gptq, peak_bytes=peak_gptq, quantized_layers=n_layers,
                    throughput_vs_bf16=sec_bf16 / sec_gptq, dequant_seconds_per_forward=dequant_seconds,
                    p1_drift_max_pp=float(drift.max()), p1_drift_mean_pp=float(drift.mean()))
    return [bf16_row, gptq_row]
