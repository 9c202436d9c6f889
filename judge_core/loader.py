"""The hf loader: a Checkpoint -> a transformers causal LM (the hf backend and the reference twin).

Float checkpoints load through transformers' own `from_pretrained`, given the config already read
(both Qwen3.5 layouts load into `Qwen3_5ForCausalLM`, checked on transformers 5.23). Quantized ones
(judge_core.quant: GPTQ, FP8) never go through transformers' quantizers (optimum / gptqmodel /
FineGrainedFP8): the model is built from its config with parameters on the meta device, the plug-in
swaps its modules in, and every tensor of the plug-in's reader is assigned where it belongs.
Both layouts load: checkpoint.KEY_MAP maps `model.language_model.X` to `model.X` and skips
`model.visual.*` / `mtp.*`.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch
from torch import nn

from .checkpoint import Checkpoint, TensorReader
from .hf_kernels import use_exact_torch_kernels

log = logging.getLogger(__name__)


def load_hf_model(checkpoint: Checkpoint | str | os.PathLike, *, dtype: torch.dtype,
                  device: torch.device | str) -> nn.Module:
    """An eval-mode causal LM on `device` in `dtype`; GPTQ layers kept 4-bit (GPTQLinear), the fp8
    layers of an FP8 checkpoint in fp8 (FP8Linear). checkpoint: a Checkpoint, or a path / hub id."""
    ckpt = Checkpoint.open(checkpoint)
    device = torch.device(device)
    if ckpt.quant is None:
        from transformers import AutoModelForCausalLM

        # No device_map: it needs accelerate. Load on the CPU, then move once. `config=`: not read again.
        model = AutoModelForCausalLM.from_pretrained(str(ckpt.path), config=hf_config(ckpt.config), dtype=dtype)
        use_exact_torch_kernels(model)  # fla installed on a CPU machine would crash in Triton (hf_kernels.py)
        return model.to(device).eval()

    quant = ckpt.quant
    reader = quant.plugin.wrap_reader(TensorReader(ckpt.path, device), quant.config)
    model = build_empty_model(ckpt.config, dtype)
    quant.plugin.swap_modules(model, reader, quant.config)
    unexpected = [reader.raw_key(key) for key in sorted(reader.keys())
                  if not _assign(model, key, reader.get(key), dtype)]
    if unexpected:
        log.warning("%s: %d checkpoint tensors not used by the model, e.g. %s", quant.method, len(unexpected),
                    unexpected[:3])
    _tie_embeddings(model)
    missing = _meta_tensors(model)
    if missing:
        raise ValueError(f"{ckpt.path}: the checkpoint does not provide {len(missing)} model tensors, "
                         f"e.g. {missing[:5]}")
    model = model.to(device).eval()
    quant.plugin.after_load(model, reader, quant.config)
    use_exact_torch_kernels(model)  # fla installed on a CPU machine would crash in Triton (hf_kernels.py)
    return model


def hf_config(config: dict):
    """The transformers config object of a config.json dict, without its quantization_config: our
    plug-ins read the quantization, and transformers would route it to optimum / gptqmodel."""
    from transformers import CONFIG_MAPPING

    config = dict(config)
    config.pop("quantization_config", None)
    if isinstance(config.get("text_config"), dict):
        config["text_config"] = {k: v for k, v in config["text_config"].items() if k != "quantization_config"}
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"config.json: model_type={model_type!r} is not known to transformers")
    return CONFIG_MAPPING[model_type].from_dict(config)


# -- building the model on meta -------------------------------------------------------------------------
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


def build_empty_model(config: dict, dtype: torch.dtype) -> nn.Module:
    """The causal LM of a config.json dict with all parameters on meta."""
    from transformers import AutoModelForCausalLM

    with parameters_on_meta():
        return AutoModelForCausalLM.from_config(hf_config(config), dtype=dtype)


def _assign(model: nn.Module, key: str, tensor: torch.Tensor, dtype: torch.dtype) -> bool:
    """Put `tensor` at state-dict key `key` (parameter or buffer); False when the model has no such key.

    Float tensors go to the model dtype, except where the module keeps another dtype on purpose: the
    meta tensor's dtype decides for integer tensors and fp16 ones (GPTQ's qweight / g_idx, fp16 scales)."""
    module_name, _, attr = key.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        return False
    target = module._parameters.get(attr, module._buffers.get(attr))
    if target is not None and (not target.is_floating_point() or target.dtype == torch.float16):
        tensor = tensor.to(target.dtype)
    elif tensor.is_floating_point():
        tensor = tensor.to(dtype)
    if attr in module._parameters:
        module._parameters[attr] = nn.Parameter(tensor, requires_grad=False)
    elif attr in module._buffers:
        module._buffers[attr] = tensor
    else:
        return False
    return True


def _tie_embeddings(model: nn.Module) -> None:
    tie = getattr(model.config, "tie_word_embeddings", False)
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if tie and isinstance(head, nn.Linear) and head.weight.device.type == "meta":
        head.weight = embed.weight


def _meta_tensors(model: nn.Module) -> list[str]:
    names = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    return names + [n for n, b in model.named_buffers() if b.device.type == "meta"]
