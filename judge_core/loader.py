"""Checkpoint dir -> transformers causal LM (the hf backend and the reference twin).

Dense checkpoints load through transformers: both Qwen3.5 layouts (text-only `model.layers.N` and
multimodal `model.language_model.layers.N`) load into `Qwen3_5ForCausalLM` through
AutoModelForCausalLM (checked on transformers 5.23). GPTQ checkpoints load through our own loader
(judge_core/gptq), never through optimum/gptqmodel; FP8 ones through judge_core/fp8/load.py. The path must already be resolved
(judge_core.checkpoint.resolve): hub ids never reach this module.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import quantization_config
from .hf_kernels import use_exact_torch_kernels

LOADERS = ("gptq", "fp8")  # quantization methods the hf backend reads; a float checkpoint needs none


def load_hf_model(path: str | Path, *, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """An eval-mode causal LM on `device` in `dtype`, GPTQ layers kept 4-bit (GPTQLinear), FP8 layers
    of an FP8 checkpoint in fp8 (FP8Linear)."""
    path = Path(path)
    quant = quantization_config(path)
    method = None if quant is None else quant["quant_method"]
    if method == "fp8":
        from .fp8.load import load_fp8_hf_model

        return load_fp8_hf_model(path, quant, dtype=dtype, device=device).eval()
    if method == "gptq":
        from .gptq import load_gptq_model

        return load_gptq_model(path, dtype=dtype, device=device).eval()
    if method is not None:
        raise ValueError(f"{path}: quant_method={method!r} is not supported by judge_core's hf loader "
                         f"(supported: {LOADERS})")
    from transformers import AutoModelForCausalLM

    # No device_map: it needs accelerate. Load on the CPU, then move once.
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    use_exact_torch_kernels(model)  # fla installed on a CPU machine would crash in Triton (hf_kernels.py)
    return model.to(device).eval()
