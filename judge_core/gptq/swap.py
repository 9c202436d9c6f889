"""The GPTQ module swap, once for both backends: every Linear whose checkpoint holds `<key>.qweight`
becomes a GPTQLinear (on meta, to be filled by the loader).

- transformers models (the hf backend, the reference twin): each `nn.Linear` named like its checkpoint key;
- our packed model: a `FusedLinear` (several checkpoint Linears concatenated into one GEMM) with
  quantized parts becomes a `FusedGPTQLinear` (one GEMM for the quantized parts, one for any float
  ones); where the quantized parts cannot be concatenated (act-order g_idx that differ between them, a
  bias on some parts only) it becomes a `SplitLinear` of GPTQLinear / nn.Linear parts, one GEMM each,
  and one log line says why.

Shapes are checked against the model's own sizes from config.json before any weight is read, and every
error names the layer and the sizes.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..models.linear import FusedLinear, SplitLinear
from .format import PACK, QuantConfig
from .fused import FusedGPTQLinear
from .linear import GPTQLinear

log = logging.getLogger(__name__)


def check_layer(key: str, in_features: int, out_features: int, shapes: dict, cfg: QuantConfig) -> int:
    """Validate one quantized layer's tensor shapes (checkpoint key `key`); returns its group count."""
    for part in ("qzeros", "scales"):
        if f"{key}.{part}" not in shapes:
            raise ValueError(f"GPTQ layer {key}: {key}.qweight is present but {key}.{part} is missing")
    if in_features % PACK or out_features % PACK:
        raise ValueError(f"GPTQ layer {key}: shape [out={out_features}, in={in_features}] does not divide by {PACK}: "
                         "4-bit GPTQ packs 8 values per int32 word")
    qweight, qzeros, scales = (tuple(shapes[f"{key}.{p}"]) for p in ("qweight", "qzeros", "scales"))
    if qweight != (in_features // PACK, out_features):
        bits_guess = (f" (looks like {32 * qweight[0] // in_features}-bit)"
                      if len(qweight) == 2 and qweight[0] and qweight[0] * PACK != in_features else "")
        raise ValueError(f"GPTQ layer {key}: qweight shape {qweight} != expected {(in_features // PACK, out_features)} "
                         f"for a 4-bit [out={out_features}, in={in_features}] layer{bits_guess}")
    if cfg.group_size != -1 and in_features % cfg.group_size:
        raise ValueError(f"GPTQ layer {key}: in_features={in_features} does not divide by group_size={cfg.group_size}")
    n_groups = cfg.n_groups(in_features)
    if scales != (n_groups, out_features):
        raise ValueError(f"GPTQ layer {key}: scales shape {scales} != expected {(n_groups, out_features)} "
                         f"(group_size={cfg.group_size}, in_features={in_features})")
    if qzeros != (n_groups, out_features // PACK):
        raise ValueError(f"GPTQ layer {key}: qzeros shape {qzeros} != expected {(n_groups, out_features // PACK)}")
    g_idx = shapes.get(f"{key}.g_idx")
    if g_idx is not None and tuple(g_idx) != (in_features,):
        raise ValueError(f"GPTQ layer {key}: g_idx shape {tuple(g_idx)} != expected ({in_features},)")
    return n_groups


def gptq_linear(key: str, in_features: int, out_features: int, shapes: dict, cfg: QuantConfig) -> GPTQLinear:
    """A meta GPTQLinear for checkpoint layer `key`, its shapes checked."""
    n_groups = check_layer(key, in_features, out_features, shapes, cfg)
    return GPTQLinear(in_features, out_features, n_groups, cfg, bias=f"{key}.bias" in shapes, device="meta")


def fusion_problem(keys: list[str], reader) -> str | None:
    """Why the layers `keys` (some quantized, maybe some float) cannot become one FusedGPTQLinear; None
    when they can.

    All quantized ones share the config's bits, group_size and format; what can still differ is the
    row grouping (g_idx, a per-layer permutation under act-order) and the bias."""
    quantized = [k for k in keys if f"{k}.qweight" in reader]
    if any(f"{k}.bias" in reader for k in keys if k not in quantized):
        return "a float part has a bias"
    if len({f"{k}.bias" in reader for k in quantized}) > 1:
        return "a bias on some parts only"
    first = reader.get(f"{quantized[0]}.g_idx")
    for k in quantized[1:]:
        if not torch.equal(reader.get(f"{k}.g_idx"), first):
            return "act-order g_idx differ between the parts"
    return None


def swap_gptq_linears(model: nn.Module, reader, cfg: QuantConfig, *, key_prefix: str = "",
                      external: tuple[str, ...] = (), fuse: bool = True) -> list[str]:
    """Swap in place; returns the checkpoint keys of the quantized layers.

    reader: the checkpoint's tensors by causal-LM key (shapes, and g_idx to decide fusion), wrapped by
    the GPTQ plug-in so that an implied g_idx reads as stored. A module named `n` has checkpoint key
    `key_prefix + n` (our packed model's `layers.0...` are `model.layers.0...` in the checkpoint).
    `external`: quantized layers the caller reads itself (the packed model's head rows), not an error
    when no module has them. fuse=False keeps every projection group split (the fused path's twin).
    """
    shapes = reader.shapes()
    swapped, split_why = [], {}
    for name, module in list(model.named_modules()):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(module, FusedLinear):
            base = f"{key_prefix}{parent_name}." if parent_name else key_prefix
            keys = [base + part for part in module.part_names]
            if not any(f"{k}.qweight" in shapes for k in keys):
                continue
            problem = fusion_problem(keys, reader) if fuse else "fuse=False"
            if problem is None:
                quantized = [f"{k}.qweight" in shapes for k in keys]
                n_groups = [check_layer(k, module.in_features, size, shapes, cfg)
                            for k, size, q in zip(keys, module.out_sizes, quantized) if q][0]
                bias = any(f"{k}.bias" in shapes for k in keys)
                setattr(parent, child, FusedGPTQLinear(module.in_features, module.out_sizes, module.part_names,
                                                       quantized, n_groups, cfg, bias=bias, device="meta"))
                swapped += [k for k, q in zip(keys, quantized) if q]
                continue
            split_why.setdefault(problem, []).append(f"{base}{{{','.join(module.part_names)}}}")
            parts = {}
            for part, key, size in zip(module.part_names, keys, module.out_sizes):
                if f"{key}.qweight" in shapes:
                    parts[part] = gptq_linear(key, module.in_features, size, shapes, cfg)
                    swapped.append(key)
                else:
                    parts[part] = nn.Linear(module.in_features, size, bias=False, device="meta")
            setattr(parent, child, SplitLinear(parts))
        elif isinstance(module, nn.Linear) and f"{key_prefix}{name}.qweight" in shapes:
            key = key_prefix + name
            setattr(parent, child, gptq_linear(key, module.in_features, module.out_features, shapes, cfg))
            swapped.append(key)
    for problem, groups in split_why.items():
        log.info("GPTQ: %d projection groups kept split, one GEMM per part (%s): e.g. %s", len(groups), problem,
                 groups[:2])
    done = set(swapped) | set(external)
    stray = sorted(k[: -len(".qweight")] for k in shapes if k.endswith(".qweight") and k[: -len(".qweight")] not in done)
    if stray:
        raise ValueError(f"GPTQ: quantized tensors for layers that are not Linear layers of this model: {stray[:5]}")
    return swapped
