"""token_budget="auto": how many tokens one forward batch may hold, from the free GPU memory.

A batch's memory is the weights (already resident) plus activations that grow with its token count.
We estimate the transient bytes per token of one decoder layer at its peak (activations are freed
layer by layer in inference), add the per-row head output and a fixed reserve (the largest dequantized
GPTQ weight, allocator slack), and divide what is free. The estimate errs high: the runner's
out-of-memory split-and-retry stays the safety net, this only makes it rare on 8-16 GB cards.
"""

from __future__ import annotations

import torch

CPU_BUDGET = 32768
MIN_BUDGET = 1024
ROUND_TO = 1024
# Gated DeltaNet without fla kernels (transformers' torch fallback) upcasts q, k, v, gates and the
# chunk state to fp32 and keeps about this many copies of the qkv width alive at once (measured on
# the code of transformers 5.23's torch_chunk_gated_delta_rule; fla keeps far fewer).
GDN_FP32_COPIES = 8
# Shortest prompt a batch row is assumed to hold, to charge the [rows, vocab] head output per token.
MIN_ROW_TOKENS = 256


def _get(cfg, name, default=0):
    if isinstance(cfg, dict):
        return cfg.get(name, default) if cfg.get(name) is not None else default
    value = getattr(cfg, name, default)
    return default if value is None else value


def _text_config(model_or_config):
    cfg = getattr(model_or_config, "config", model_or_config)
    if isinstance(cfg, dict):
        return cfg.get("text_config") or cfg
    return getattr(cfg, "text_config", None) or cfg


def bytes_per_token(config, dtype_bytes: int = 2) -> int:
    """Peak transient activation bytes per batch token for one decoder layer of this config."""
    cfg = _text_config(config)
    hidden = _get(cfg, "hidden_size")
    inter = _get(cfg, "intermediate_size")
    heads, kv_heads = _get(cfg, "num_attention_heads"), _get(cfg, "num_key_value_heads")
    head_dim = _get(cfg, "head_dim") or (hidden // max(heads, 1))
    vocab = _get(cfg, "vocab_size")
    residual = 3 * hidden * dtype_bytes                            # residual, normed input, layer output
    mlp = 3 * inter * dtype_bytes                                  # gate, up, act(gate) * up
    # Gated attention: q_proj is 2x wide (query + output gate), then k, v, output.
    attention = (3 * heads + 2 * kv_heads) * head_dim * dtype_bytes
    key_dim = _get(cfg, "linear_num_key_heads") * _get(cfg, "linear_key_head_dim")
    value_dim = _get(cfg, "linear_num_value_heads") * _get(cfg, "linear_value_head_dim")
    qkv = 2 * key_dim + value_dim
    linear_attention = 3 * qkv * dtype_bytes + GDN_FP32_COPIES * qkv * 4 if qkv else 0
    head = 2 * vocab * 4 // MIN_ROW_TOKENS                         # fp32 logits of the last position per row
    return residual + max(mlp, attention, linear_attention) + head


def _largest_dense_weight_bytes(model_or_config, dtype_bytes: int) -> int:
    """The dense weight a GPTQLinear materialises in forward (one at a time)."""
    from .linear import GPTQLinear

    if isinstance(model_or_config, torch.nn.Module):
        sizes = [m.in_features * m.out_features for m in model_or_config.modules() if isinstance(m, GPTQLinear)]
        return max(sizes, default=0) * dtype_bytes
    cfg = _text_config(model_or_config)
    return _get(cfg, "hidden_size") * _get(cfg, "intermediate_size") * dtype_bytes


def auto_token_budget(model_or_config, device, *, dtype_bytes: int = 2, max_budget: int = 32768,
                      safety: float = 1.5, reserve_bytes: int = 512 * 1024**2) -> int:
    """Tokens per forward batch that fit the free memory of `device` (CPU: 32768).

    model_or_config: a model, a transformers config or a config dict (multimodal configs use text_config).
    Call after the weights are on the device: they are then excluded from the free memory.
    safety multiplies the per-token estimate; reserve_bytes is kept free for the allocator and CUDA.
    Capped at max_budget (throughput stops growing well before 32k tokens per batch).
    """
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return CPU_BUDGET
    free, _total = torch.cuda.mem_get_info(device)
    # Memory the caching allocator holds but does not use is free to us too.
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    per_token = bytes_per_token(model_or_config, dtype_bytes) * safety
    usable = free - reserve_bytes - _largest_dense_weight_bytes(model_or_config, dtype_bytes)
    budget = int(usable // per_token) // ROUND_TO * ROUND_TO
    return max(MIN_BUDGET, min(max_budget, budget))
