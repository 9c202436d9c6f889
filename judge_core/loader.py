"""Checkpoint -> torch model: dense checkpoints through transformers, GPTQ ones through our loader.

Both Qwen3.5 layouts (text-only `model.layers.N` and multimodal `model.language_model.layers.N`) load
into `Qwen3_5ForCausalLM` through AutoModelForCausalLM (checked on transformers 5.23).
"""

from __future__ import annotations

import torch


def read_config(path: str) -> dict:
    """config.json as a dict, from a local directory or a hub id (through transformers' resolver)."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(str(path))
    return config


def text_config(config: dict) -> dict:
    """The language model's part of a config (multimodal checkpoints nest it under text_config)."""
    return config.get("text_config") or config


def is_gptq(config: dict) -> bool:
    quant = config.get("quantization_config") or text_config(config).get("quantization_config") or {}
    return str(quant.get("quant_method", "")).lower() == "gptq"


def load_hf_model(path: str, *, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """An eval-mode causal LM on `device` in `dtype`, GPTQ checkpoints dequantized layer by layer."""
    from pathlib import Path

    config = read_config(path)
    # Old auto-gptq repos keep the quantization settings in quantize_config.json, not config.json.
    legacy = Path(path).is_dir() and (Path(path) / "quantize_config.json").exists()
    if is_gptq(config) or legacy:
        from .gptq import load_gptq_model

        return load_gptq_model(str(path), dtype=dtype, device=device).eval()
    from transformers import AutoModelForCausalLM

    # No device_map: it needs accelerate. Load on the CPU, then move once.
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    return model.to(device).eval()
