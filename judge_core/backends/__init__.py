"""Forward backends: `hf` (transformers, right padding) and `packed` (our Qwen3.5 over cu_seqlens).

`auto` picks packed where it can load the checkpoint (a Qwen3.5 config it implements, a quantization it
reads) and hf otherwise; if packed still fails to load the checkpoint it falls back to hf and says so.
"""

from __future__ import annotations

import importlib
import logging

import torch

log = logging.getLogger(__name__)

BACKENDS = {
    "hf": "judge_core.backends.hf:HFBackend",
    "packed": "judge_core.backends.packed:PackedBackend",
}


def _import(name: str):
    module_name, cls_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def check_backend_name(name: str) -> str:
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected 'auto' or one of {sorted(BACKENDS)}")
    return name


def choose_backend(name: str, config: dict, device: torch.device, quant: dict | None = None) -> str:
    """Resolve "auto" from the config: packed where it supports the model, quantization and device, else hf."""
    if check_backend_name(name) != "auto":
        return name
    from .packed import supports

    return "packed" if supports(config, device, quant) else "hf"


def load_backend(name: str, path, *, dtype: torch.dtype, device: torch.device, candidate_ids: list[int],
                 config: dict | None = None, quant: dict | None = None, fp8=None):
    """Construct backend `name` over a resolved checkpoint dir ("auto" resolved against its config).

    fp8: a `judge_core.fp8.load.FP8Plan` (from `plan_fp8`, checked before loading) applied to the
    loaded model: quantize-at-load of a float checkpoint, and the FP8 compute of every fp8 layer.
    """
    backend = _construct(name, path, dtype=dtype, device=device, candidate_ids=candidate_ids, config=config,
                         quant=quant)
    if fp8 is not None:
        fp8.apply_(backend.model)
    return backend


def _construct(name: str, path, *, dtype, device, candidate_ids, config, quant):
    from ..checkpoint import quantization_config, read_config
    from ..warmup import configure_kernel_caches

    if torch.device(device).type == "cuda":  # Triton runs only there: no cache dir on a CPU machine
        configure_kernel_caches()  # before any backend imports a Triton kernel: autotune choices persist on disk
    config = read_config(path) if config is None else config
    quant = quantization_config(path, config) if quant is None else quant
    chosen = choose_backend(name, config, device, quant)
    if name == "auto" and chosen == "packed":
        try:
            backend = _import("packed")(path, dtype=dtype, device=device, candidate_ids=candidate_ids)
        except (ValueError, KeyError, NotImplementedError) as e:
            log.warning("backend auto: packed cannot load %s (%s); using hf", path, e)
            chosen = "hf"
        else:
            log.info("backend auto: packed")
            return backend
    if name == "auto":
        log.info("backend auto: %s", chosen)
    return _import(chosen)(path, dtype=dtype, device=device, candidate_ids=candidate_ids)
