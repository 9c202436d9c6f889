"""Forward backends: `hf` (transformers, right padding) and `packed` (our Qwen3.5 over cu_seqlens)."""

from __future__ import annotations

import importlib

import torch

BACKENDS = {
    "hf": "judge_core.backends.hf:HFBackend",
    "packed": "judge_core.backends.packed:PackedBackend",
}


def _import(name: str):
    module_name, cls_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def choose_backend(name: str, config: dict, device: torch.device) -> str:
    """Resolve "auto": the packed backend where it supports the model and device, else hf."""
    if name != "auto":
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}: expected 'auto' or one of {sorted(BACKENDS)}")
        return name
    try:
        packed = importlib.import_module("judge_core.backends.packed")
    except ImportError:
        return "hf"
    return "packed" if packed.supports(config, device) else "hf"


def load_backend(name: str, path: str, *, dtype: torch.dtype, device: torch.device, candidate_ids: list[int],
                 config: dict | None = None):
    """Construct backend `name` ("auto" resolved against the checkpoint's config)."""
    if config is None:
        from ..loader import read_config

        config = read_config(path)
    resolved = choose_backend(name, config, device)
    return _import(resolved)(path, dtype=dtype, device=device, candidate_ids=candidate_ids)
