"""The prefill cost model (DESIGN §5) and a matmul peak measured on the device in the same run.

FLOPs of one judge prompt of L tokens (the useful work; padding and full-vocabulary heads are waste
and are not counted, so every system is measured against the same yardstick):
  2 x (non-embedding matmul parameters) x L                  every token through every Linear
+ n_full_layers x 2 x n_heads x head_dim x L^2               causal QK^T and PV (4·H·D per key, half the keys)
+ n_linear_layers x 6 x n_value_heads x k_dim x v_dim x L    Gated DeltaNet state read, update, output
+ 2 x hidden x n_candidates                                  the two candidate rows of the head, last position
For Qwen3.5-4B: 7.14 GFLOP per token + 65.5k x L per token of attention + ~0.08 GFLOP per token of GDN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CostModel:
    """Per-prompt FLOPs of a Qwen3.5 (or plain transformer) text config."""

    matmul_params: int          # non-embedding Linear weights (no lm_head, no embeddings)
    hidden_size: int
    n_full_layers: int
    n_heads: int
    head_dim: int
    n_linear_layers: int = 0
    linear_value_heads: int = 0
    linear_key_dim: int = 0
    linear_value_dim: int = 0
    n_candidates: int = 2

    @classmethod
    def from_config(cls, config) -> "CostModel":
        """From a HF config (a multimodal config's text part is used). Counts Linear weights exactly
        by building the model on the meta device (no memory, ~1 s for the 4B shape)."""
        from transformers import AutoModelForCausalLM

        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(text)
        matmul_params = sum(m.weight.numel() for name, m in model.named_modules()
                            if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head"))
        layer_types = list(getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers)
        n_full = sum(t == "full_attention" for t in layer_types)
        n_linear = sum(t == "linear_attention" for t in layer_types)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return cls(matmul_params=matmul_params, hidden_size=text.hidden_size, n_full_layers=n_full,
                   n_heads=text.num_attention_heads, head_dim=head_dim, n_linear_layers=n_linear,
                   linear_value_heads=getattr(text, "linear_num_value_heads", 0) or 0,
                   linear_key_dim=getattr(text, "linear_key_head_dim", 0) or 0,
                   linear_value_dim=getattr(text, "linear_value_head_dim", 0) or 0)

    @classmethod
    def from_pretrained(cls, path) -> "CostModel":
        from transformers import AutoConfig

        return cls.from_config(AutoConfig.from_pretrained(str(path)))

    def prompt_flops(self, length: int) -> float:
        """FLOPs to prefill one prompt of `length` tokens and read its candidate logits."""
        L = float(length)
        dense = 2.0 * self.matmul_params * L
        attention = self.n_full_layers * 2.0 * self.n_heads * self.head_dim * L * L
        gdn = self.n_linear_layers * 6.0 * self.linear_value_heads * self.linear_key_dim * self.linear_value_dim * L
        head = 2.0 * self.hidden_size * self.n_candidates
        return dense + attention + gdn + head

    def total_flops(self, lengths) -> float:
        return float(sum(self.prompt_flops(n) for n in lengths))

    def describe(self) -> dict:
        return {"matmul_params": self.matmul_params, "gflop_per_token_dense": 2e-9 * self.matmul_params,
                "attention_flop_per_token_per_context_token": self.n_full_layers * 2 * self.n_heads * self.head_dim,
                "n_full_layers": self.n_full_layers, "n_linear_layers": self.n_linear_layers}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measured_matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                         size: int | None = None, seconds: float = 1.0) -> dict:
    """Best achieved FLOP/s of a square matmul on this device and dtype (the MFU denominator).

    size: matrix side; default 8192 on GPU (large enough to saturate tensor cores), 1024 on CPU
    (a few tens of ms per call on 2 cores). Takes the best of repeated timed calls for ~`seconds`.
    """
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):  # warm up: kernel selection, thread pools
        a @ b
    _sync(device)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    reps = 0
    while reps < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(4 if device.type == "cuda" else 1):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / (4 if device.type == "cuda" else 1))
        reps += 1
    flops = 2.0 * size ** 3 / best
    return {"device": str(device), "dtype": str(dtype).replace("torch.", ""), "size": size, "flops": flops,
            "tflops": flops / 1e12}
