"""The GPTQ quantization plug-in (judge_core.quant): GPTQ 4-bit checkpoints for both loaders, without
auto-gptq / gptqmodel.

- parse: `quantization_config` -> QuantConfig (format.py);
- wrap_reader: a checkpoint without act-order may omit `g_idx`; the reader supplies the implied one
  (row i in group i // group_size), so every loader reads a GPTQ layer's tensors alike;
- swap_modules: on the meta model, every Linear whose checkpoint holds `<key>.qweight` becomes a
  GPTQLinear, a fused projection group a FusedGPTQLinear (swap.py);
- after_load: every g_idx names a group the layer has.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from .format import QuantConfig, default_g_idx
from .linear import GPTQLinear
from .swap import swap_gptq_linears

log = logging.getLogger(__name__)


class GPTQReader:
    """A tensor reader that also serves `<layer>.g_idx` where the checkpoint implies it (no act-order)."""

    def __init__(self, reader, cfg: QuantConfig):
        self.reader, self.cfg, self.path = reader, cfg, reader.path
        keys = set(reader.keys())
        self._implied = {f"{k[: -len('.qweight')]}.g_idx": k for k in keys
                         if k.endswith(".qweight") and f"{k[: -len('.qweight')]}.g_idx" not in keys}
        self._keys = keys | set(self._implied)

    def keys(self) -> set[str]:
        return set(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        if key in self._implied:
            return (self.reader.shape(self._implied[key])[0] * 8,)
        return self.reader.shape(key)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k) for k in self._keys}

    def raw_key(self, key: str) -> str:
        return key if key in self._implied else self.reader.raw_key(key)

    def get(self, key: str) -> torch.Tensor:
        if key in self._implied:
            return default_g_idx(self.shape(key)[0], self.cfg.group_size)
        return self.reader.get(key)


class _GPTQPlugin:
    name = "gptq"

    def parse(self, quant_json: dict, where: str) -> QuantConfig:
        return QuantConfig.from_json(quant_json, where=where)

    def wrap_reader(self, reader, cfg: QuantConfig) -> GPTQReader:
        return GPTQReader(reader, cfg)

    def swap_modules(self, model: nn.Module, reader, cfg: QuantConfig, *, key_prefix: str = "",
                     external: tuple[str, ...] = (), fuse: bool = True) -> list[str]:
        swapped = swap_gptq_linears(model, reader, cfg, key_prefix=key_prefix, external=external, fuse=fuse)
        if not swapped and not any(f"{e}.qweight" in reader for e in external):
            raise ValueError(f"{reader.path}: config says GPTQ but no tensor named '*.qweight' was found")
        log.info("GPTQ: %d quantized layers in %s (%s)", len(swapped), reader.path, cfg)
        return swapped

    def after_load(self, model: nn.Module, reader, cfg: QuantConfig, *, key_prefix: str = "") -> None:
        for name, layer in model.named_modules():
            if isinstance(layer, GPTQLinear):
                _check_g_idx(key_prefix + name, layer)


GPTQ = _GPTQPlugin()


def load_gptq_model(path: str | Path, *, dtype: torch.dtype = torch.bfloat16, device="cpu") -> nn.Module:
    """A GPTQ checkpoint dir as an eval-mode transformers causal LM on `device` (the hf loader, which
    raises for a checkpoint that is not GPTQ); float tensors in `dtype`."""
    from ..checkpoint import Checkpoint
    from ..loader import load_hf_model

    ckpt = Checkpoint.open(path)
    if ckpt.quant_method != "gptq":
        raise ValueError(f"{ckpt.path}: no GPTQ quantization_config in config.json")
    return load_hf_model(ckpt, dtype=dtype, device=device)


def _check_g_idx(name: str, layer: GPTQLinear) -> None:
    g = layer.g_idx
    lo, hi = int(g.min()), int(g.max())
    if lo < 0 or hi >= layer.n_groups:
        bad = lo if lo < 0 else hi
        raise ValueError(f"GPTQ layer {name}: g_idx holds group {bad}, outside 0..{layer.n_groups - 1}")
