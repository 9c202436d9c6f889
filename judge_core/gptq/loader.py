"""GPTQ checkpoint -> a transformers causal LM with GPTQLinear layers, without auto-gptq / gptqmodel.

The model is built from its config with parameters on the meta device (buffers such as rotary
inv_freq are computed for real), every Linear whose checkpoint holds `<name>.qweight` is swapped for a
GPTQLinear, and then each tensor of the safetensors files is assigned where it belongs.
Both Qwen3.5 layouts load: multimodal keys `model.language_model.X` map to `model.X` of
Qwen3_5ForCausalLM, and `model.visual.*` / `mtp.*` (unused by the judge) are skipped.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import TensorReader, quantization_config
from ..hf_kernels import use_exact_torch_kernels
from .format import QuantConfig, default_g_idx
from .linear import GPTQLinear
from .swap import swap_gptq_linears

log = logging.getLogger(__name__)


# -- building the model ---------------------------------------------------------------------------------
@contextlib.contextmanager
def parameters_on_meta():
    """Create every nn.Parameter on the meta device (no memory, no init), buffers for real.

    Buffers stay real because some are not in the checkpoint and are computed at init (rotary inv_freq).
    """
    original = nn.Module.register_parameter

    def register_parameter(module, name, param):
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_parameter
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def build_empty_model(path: str | Path, dtype: torch.dtype) -> nn.Module:
    """The causal LM of a checkpoint's config with all parameters on meta."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(path))
    # transformers would route a GPTQ config to optimum/gptqmodel: this loader replaces them.
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    with parameters_on_meta():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def _assign(model: nn.Module, key: str, tensor: torch.Tensor) -> bool:
    """Put `tensor` at state-dict key `key` (parameter or buffer); False when the model has no such key."""
    module_name, _, attr = key.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        return False
    if attr in module._parameters:
        module._parameters[attr] = nn.Parameter(tensor, requires_grad=False)
    elif attr in module._buffers:
        module._buffers[attr] = tensor
    else:
        return False
    return True


def _tie_embeddings(model: nn.Module) -> None:
    config = model.config
    tie = getattr(config, "tie_word_embeddings", False)
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if tie and isinstance(head, nn.Linear) and head.weight.device.type == "meta":
        head.weight = embed.weight


def _meta_tensors(model: nn.Module) -> list[str]:
    names = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    return names + [n for n, b in model.named_buffers() if b.device.type == "meta"]


def load_gptq_model(path: str | Path, *, dtype: torch.dtype = torch.bfloat16, device="cpu") -> nn.Module:
    """A GPTQ checkpoint dir as an eval-mode causal LM on `device`; float tensors in `dtype`.

    Quantized layers become GPTQLinear (qweight/qzeros/g_idx int32 and scales fp16 as stored); layers
    the checkpoint keeps in float stay nn.Linear. Raises naming the layer and value for anything
    unsupported (bits, format, shapes), and naming any parameter the checkpoint does not provide.
    """
    path = Path(path)
    device = torch.device(device)
    quant = quantization_config(path)
    if quant is None or quant["quant_method"] != "gptq":
        raise ValueError(f"{path}: no GPTQ quantization_config in config.json")
    cfg = QuantConfig.from_json(quant, where=f"{path}/config.json quantization_config")
    reader = TensorReader(path, device)
    model = build_empty_model(path, dtype)
    swapped = swap_gptq_linears(model, reader.shapes(), cfg)
    if not swapped:
        raise ValueError(f"{path}: config says GPTQ but no tensor named '*.qweight' was found")

    unexpected, swapped_set = [], set(swapped)
    for key in sorted(reader.keys()):
        tensor = reader.get(key)
        layer, _, part = key.rpartition(".")
        if layer in swapped_set and part in ("qweight", "qzeros", "g_idx"):
            tensor = tensor.to(torch.int32)
        elif layer in swapped_set and part == "scales":
            tensor = tensor.to(torch.float16)
        elif tensor.is_floating_point():
            tensor = tensor.to(dtype)
        if not _assign(model, key, tensor):
            unexpected.append(reader.raw_key(key))
    if unexpected:
        log.warning("GPTQ: %d checkpoint tensors not used by the model, e.g. %s", len(unexpected), unexpected[:3])

    for name in swapped:
        layer = model.get_submodule(name)
        if layer.g_idx.device.type == "meta":  # some writers omit g_idx without act-order
            layer.g_idx = default_g_idx(layer.in_features, cfg.group_size, device=device)
        _check_g_idx(name, layer)
    _tie_embeddings(model)
    missing = _meta_tensors(model)
    if missing:
        raise ValueError(f"{path}: the checkpoint does not provide {len(missing)} model tensors, e.g. {missing[:5]}")
    log.info("GPTQ: loaded %s with %d quantized layers (%s)", path, len(swapped), cfg)
    use_exact_torch_kernels(model)  # fla installed on a CPU machine would crash in Triton (hf_kernels.py)
    return model.to(device).eval()


def _check_g_idx(name: str, layer: GPTQLinear) -> None:
    g = layer.g_idx
    lo, hi = int(g.min()), int(g.max())
    if lo < 0 or hi >= layer.n_groups:
        bad = lo if lo < 0 else hi
        raise ValueError(f"GPTQ layer {name}: g_idx holds group {bad}, outside 0..{layer.n_groups - 1}")
