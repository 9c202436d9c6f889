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


def choose_backend(name: str, checkpoint, device: torch.device) -> str:
    """Resolve "auto" for a Checkpoint: packed where it supports the model, quantization and device, else hf."""
    if check_backend_name(name) != "auto":
        return name
    from .packed import supports

    return "packed" if supports(checkpoint, device) else "hf"


def load_backend(name: str, checkpoint, *, dtype: torch.dtype, device: torch.device, label_ids: list[int],
                 fp8=None, full_vocab: bool = False):
    """Construct backend `name` over a Checkpoint (or a checkpoint dir / hub id, opened here), "auto"
    resolved against it.

    fp8: a `judge_core.fp8.load.FP8Plan` (from `plan_fp8`, checked before loading) applied to the
    loaded model: quantize-at-load of a float checkpoint, and the FP8 compute of every fp8 layer.
    full_vocab: the backend returns full-vocabulary log-probabilities of the label tokens instead of their
    logits (a spec with readout "full"); the candidate_logits contract is otherwise the same.
    """
    from ..checkpoint import Checkpoint

    backend = _construct(name, Checkpoint.open(checkpoint), dtype=dtype, device=device, label_ids=label_ids,
                         full_vocab=full_vocab)
    if fp8 is not None:
        fp8.apply_(backend.model)
    return backend


def _construct(name: str, ckpt, *, dtype, device, label_ids, full_vocab):
    from ..warmup import configure_kernel_caches

    if torch.device(device).type == "cuda":  # Triton runs only there: no cache dir on a CPU machine
        configure_kernel_caches()  # before any backend imports a Triton kernel: autotune choices persist on disk
    chosen = choose_backend(name, ckpt, device)
    if name == "auto" and chosen == "packed":
        try:
            backend = _import("packed")(ckpt, dtype=dtype, device=device, label_ids=label_ids,
                                        full_vocab=full_vocab)
        except (ValueError, KeyError, NotImplementedError) as e:
            log.warning("backend auto: packed cannot load %s (%s); using hf", ckpt.path, e)
            chosen = "hf"
        else:
            log.info("backend auto: packed")
            return backend
    if name == "auto":
        log.info("backend auto: %s", chosen)
    return _import(chosen)(ckpt, dtype=dtype, device=device, label_ids=label_ids, full_vocab=full_vocab)
