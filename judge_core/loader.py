"""Checkpoint -> torch model: dense checkpoints through transformers, GPTQ ones through our loader.

Both Qwen3.5 layouts (text-only `model.layers.N` and multimodal `model.language_model.layers.N`) load
into `Qwen3_5ForCausalLM` through AutoModelForCausalLM (checked on transformers 5.23).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .hf_kernels import use_torch_kernels_on_cpu


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


def checkpoint_files(path: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint dir: the shards of model.safetensors.index.json, or all."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / s for s in shards]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {path}")
    return files


def load_hf_model(path: str, *, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """An eval-mode causal LM on `device` in `dtype`, GPTQ checkpoints dequantized layer by layer."""
    config = read_config(path)
    if Path(path).is_dir():
        from .gptq.format import is_gptq_checkpoint  # also reads old auto-gptq quantize_config.json

        quantized = is_gptq_checkpoint(path)
    else:
        quantized = is_gptq(config)
    if quantized:
        from .gptq import load_gptq_model

        return load_gptq_model(str(path), dtype=dtype, device=device).eval()
    from transformers import AutoModelForCausalLM

    # No device_map: it needs accelerate. Load on the CPU, then move once.
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    use_torch_kernels_on_cpu(model)  # fla installed on a CPU machine would crash in Triton (hf_kernels.py)
    return model.to(device).eval()
