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
from typing import Iterator

import torch
from torch import nn

from ..hf_kernels import use_torch_kernels_on_cpu
from .format import PACK, QuantConfig, default_g_idx, read_quant_json
from ..loader import checkpoint_files
from .linear import GPTQLinear

log = logging.getLogger(__name__)

GPTQ_SUFFIXES = ("qweight", "qzeros", "scales", "g_idx")
# Checkpoint parts the text model does not have (vision tower, multi-token-prediction head).
SKIPPED_PREFIXES = ("model.visual.", "visual.", "mtp.")


# -- reading the checkpoint -------------------------------------------------------------------------
def model_key(key: str) -> str | None:
    """Checkpoint key -> the Qwen3_5ForCausalLM state-dict key, or None for parts the judge does not use."""
    if key.startswith(SKIPPED_PREFIXES):
        return None
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model."):]
    return key


def iter_checkpoint(path: str | Path, device="cpu") -> Iterator[tuple[str, str, torch.Tensor]]:
    """(checkpoint key, model key, tensor) for every tensor the text model uses, one at a time."""
    from safetensors import safe_open

    for file in checkpoint_files(path):
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            for key in f.keys():
                target = model_key(key)
                if target is not None:
                    yield key, target, f.get_tensor(key)


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """model key -> tensor shape, read from the safetensors headers only."""
    from safetensors import safe_open

    shapes = {}
    for file in checkpoint_files(path):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                target = model_key(key)
                if target is not None:
                    shapes[target] = tuple(f.get_slice(key).get_shape())
    return shapes


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


def _check_layer(name: str, linear: nn.Linear, shapes: dict, cfg: QuantConfig) -> int:
    """Validate one quantized layer's tensor shapes against its Linear; returns its group count."""
    n_in, n_out = linear.in_features, linear.out_features
    for part in ("qzeros", "scales"):
        if f"{name}.{part}" not in shapes:
            raise ValueError(f"GPTQ layer {name}: {name}.qweight is present but {name}.{part} is missing")
    if n_in % PACK or n_out % PACK:
        raise ValueError(f"GPTQ layer {name}: shape [out={n_out}, in={n_in}] does not divide by {PACK}: "
                         "4-bit GPTQ packs 8 values per int32 word")
    qweight, qzeros, scales = (shapes[f"{name}.{p}"] for p in ("qweight", "qzeros", "scales"))
    if qweight != (n_in // PACK, n_out):
        bits_guess = f" (looks like {32 * qweight[0] // n_in}-bit)" if len(qweight) == 2 and qweight[0] else ""
        raise ValueError(f"GPTQ layer {name}: qweight shape {qweight} != expected {(n_in // PACK, n_out)} for a "
                         f"4-bit [out={n_out}, in={n_in}] layer{bits_guess}")
    if cfg.group_size != -1 and n_in % cfg.group_size:
        raise ValueError(f"GPTQ layer {name}: in_features={n_in} does not divide by group_size={cfg.group_size}")
    n_groups = cfg.n_groups(n_in)
    if scales != (n_groups, n_out):
        raise ValueError(f"GPTQ layer {name}: scales shape {scales} != expected {(n_groups, n_out)} "
                         f"(group_size={cfg.group_size}, in_features={n_in})")
    if qzeros != (n_groups, n_out // PACK):
        raise ValueError(f"GPTQ layer {name}: qzeros shape {qzeros} != expected {(n_groups, n_out // PACK)}")
    g_idx = shapes.get(f"{name}.g_idx")
    if g_idx is not None and g_idx != (n_in,):
        raise ValueError(f"GPTQ layer {name}: g_idx shape {g_idx} != expected ({n_in},)")
    return n_groups


def swap_quantized_linears(model: nn.Module, shapes: dict, cfg: QuantConfig) -> list[str]:
    """Replace each nn.Linear that has `<name>.qweight` in the checkpoint by a GPTQLinear (on meta)."""
    swapped = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or f"{name}.qweight" not in shapes:
            continue
        n_groups = _check_layer(name, module, shapes, cfg)
        quantized = GPTQLinear(module.in_features, module.out_features, n_groups, cfg,
                               bias=f"{name}.bias" in shapes, device="meta")
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, quantized)
        swapped.append(name)
    stray = [k for k in shapes if k.endswith(".qweight") and k[: -len(".qweight")] not in swapped]
    if stray:
        raise ValueError(f"GPTQ: quantized tensors for modules that are not Linear layers of this model: {stray[:5]}")
    return swapped


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
    """A GPTQ checkpoint as an eval-mode causal LM on `device`; float tensors in `dtype`.

    Quantized layers become GPTQLinear (qweight/qzeros/g_idx int32 and scales fp16 as stored); layers
    the checkpoint keeps in float stay nn.Linear. Raises naming the layer and value for anything
    unsupported (bits, format, shapes), and naming any parameter the checkpoint does not provide.
    """
    path = Path(path)
    device = torch.device(device)
    quant = read_quant_json(path)
    if quant is None:
        raise ValueError(f"{path}: no GPTQ quantization_config in config.json")
    cfg = QuantConfig.from_json(quant, where=f"{path}/config.json quantization_config")
    shapes = checkpoint_shapes(path)
    model = build_empty_model(path, dtype)
    swapped = swap_quantized_linears(model, shapes, cfg)
    if not swapped:
        raise ValueError(f"{path}: config says GPTQ but no tensor named '*.qweight' was found")

    unexpected, swapped_set = [], set(swapped)
    for ckpt_key, key, tensor in iter_checkpoint(path, device=device):
        if key.endswith((".qweight", ".qzeros", ".g_idx")) and key.rpartition(".")[0] in swapped_set:
            tensor = tensor.to(torch.int32)
        elif key.endswith(".scales") and key.rpartition(".")[0] in swapped_set:
            tensor = tensor.to(torch.float16)
        elif tensor.is_floating_point():
            tensor = tensor.to(dtype)
        if not _assign(model, key, tensor):
            unexpected.append(ckpt_key)
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
    use_torch_kernels_on_cpu(model)  # fla installed on a CPU machine would crash in Triton (hf_kernels.py)
    return model.to(device).eval()


def _check_g_idx(name: str, layer: GPTQLinear) -> None:
    g = layer.g_idx
    lo, hi = int(g.min()), int(g.max())
    if lo < 0 or hi >= layer.n_groups:
        bad = lo if lo < 0 else hi
        raise ValueError(f"GPTQ layer {name}: g_idx holds group {bad}, outside 0..{layer.n_groups - 1}")
