"""Safetensors -> our Qwen3.5 model: both checkpoint layouts, sharded or not, dense or GPTQ.

The model is built on the meta device (no memory, no init), each tensor is read from the mmap'ed
safetensors files, and the state dict is assigned in one `load_state_dict(assign=True)` (gpt-fast's
way). Fusions happen here: q/k/v, Gated DeltaNet's qkv/z/b/a and the MLP's gate/up are concatenated
into one weight each. A GPTQ checkpoint's 4-bit layers become `GPTQLinear`s (judge_core.gptq) and a
projection group holding one of them stays unfused (`SplitLinear`).

Checkpoint keys: text-only `model.layers.N...`, multimodal `model.language_model.layers.N...`;
`model.visual.*` and `mtp.*` are not used by the judge and never read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..loader import checkpoint_files, read_config
from .linear import FusedLinear, SplitLinear
from .qwen3_5 import GatedDeltaNet, Qwen3_5Args, Qwen3_5Model

log = logging.getLogger(__name__)

TEXT_PREFIXES = ("model.language_model.", "model.")   # multimodal first: it also starts with "model."
UNUSED_PREFIXES = ("model.visual.", "visual.", "mtp.", "model.mtp.")
FLOAT32_PARAMS = ("A_log", "dt_bias")                   # kept in float32 whatever the model dtype


def text_key(raw: str) -> str | None:
    """Checkpoint key -> our key, or None for parts the judge does not use."""
    if raw.startswith(UNUSED_PREFIXES):
        return None
    if raw.startswith("lm_head."):
        return raw
    for prefix in TEXT_PREFIXES:
        if raw.startswith(prefix):
            return raw[len(prefix):]
    return None


class CheckpointReader:
    """Text-model tensors of a checkpoint dir by our key (`layers.3.self_attn.q_proj.weight`, ...),
    read from the mmap'ed files straight onto `device`."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        from safetensors import safe_open

        path = Path(path)
        files = checkpoint_files(path)
        self.path = path
        device = torch.device(device)
        # safetensors names a CUDA device "cuda:N"
        where = str(device) if device.type != "cuda" else f"cuda:{device.index or 0}"
        self._handles = [safe_open(str(f), framework="pt", device=where) for f in files]
        self._where: dict[str, tuple[int, str]] = {}
        for i, handle in enumerate(self._handles):
            for raw in handle.keys():
                key = text_key(raw)
                if key is not None:
                    self._where[key] = (i, raw)

    def keys(self) -> set[str]:
        return set(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def shape(self, key: str) -> tuple[int, ...]:
        i, raw = self._where[key]
        return tuple(self._handles[i].get_slice(raw).get_shape())

    def get(self, key: str) -> torch.Tensor:
        if key not in self._where:
            raise KeyError(f"{self.path}: the checkpoint has no tensor for {key!r} (either layout)")
        i, raw = self._where[key]
        return self._handles[i].get_tensor(raw)


class StateDictReader:
    """The same interface over an in-memory transformers model's state dict (benches build the 4B
    shape on the GPU with random weights: no checkpoint on disk)."""

    def __init__(self, state_dict: dict[str, torch.Tensor], where: str = "state dict"):
        self.path = where
        self._tensors = {}
        for raw, tensor in state_dict.items():
            key = text_key(raw)
            if key is not None:
                self._tensors[key] = tensor

    def keys(self) -> set[str]:
        return set(self._tensors)

    def __contains__(self, key: str) -> bool:
        return key in self._tensors

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def get(self, key: str) -> torch.Tensor:
        if key not in self._tensors:
            raise KeyError(f"{self.path}: no tensor for {key!r} (either layout)")
        return self._tensors[key].detach()


def _gptq_linear(reader: CheckpointReader, name: str, in_features: int, out_features: int, cfg):
    """A meta GPTQLinear for checkpoint layer `name`, its shapes checked against the model's."""
    from ..gptq import GPTQLinear

    qweight, scales = reader.shape(f"{name}.qweight"), reader.shape(f"{name}.scales")
    if qweight != (in_features // 8, out_features) or scales[1:] != (out_features,):
        raise ValueError(f"GPTQ layer {name}: qweight {qweight} / scales {scales} do not fit a 4-bit "
                         f"[out={out_features}, in={in_features}] layer")
    return GPTQLinear(in_features, out_features, scales[0], cfg, bias=f"{name}.bias" in reader, device="meta")


def _swap_gptq(model: Qwen3_5Model, reader: CheckpointReader, cfg) -> list[str]:
    """Replace each projection that has `<name>.qweight` in the checkpoint (meta modules)."""
    swapped = []
    for name, module in list(model.named_modules()):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(module, FusedLinear):
            part_keys = [f"{parent_name}.{p}" for p in module.part_names]
            if not any(f"{k}.qweight" in reader for k in part_keys):
                continue
            parts = {}
            for part, key, size in zip(module.part_names, part_keys, module.out_sizes):
                if f"{key}.qweight" in reader:
                    parts[part] = _gptq_linear(reader, key, module.in_features, size, cfg)
                    swapped.append(key)
                else:
                    parts[part] = nn.Linear(module.in_features, size, bias=False, device="meta")
            setattr(parent, child, SplitLinear(parts))
        elif isinstance(module, nn.Linear) and f"{name}.qweight" in reader:
            setattr(parent, child, _gptq_linear(reader, name, module.in_features, module.out_features, cfg))
            swapped.append(name)
    stray = sorted(k[: -len(".qweight")] for k in reader.keys() if k.endswith(".qweight")
                   and k[: -len(".qweight")] not in swapped)
    if stray:
        raise ValueError(f"GPTQ: quantized tensors for layers the packed model has no Linear for: {stray[:5]}")
    return swapped


def _gptq_tensors(layer, source: str, reader: CheckpointReader, read) -> dict[str, torch.Tensor]:
    """A GPTQLinear's buffers from checkpoint layer `source`, in the dtypes GPTQLinear expects."""
    from ..gptq.format import default_g_idx

    out = {}
    for tensor_name in ("qweight", "qzeros", "scales", "g_idx", "bias"):
        key = f"{source}.{tensor_name}"
        if tensor_name == "bias" and layer.bias is None:
            continue
        if tensor_name == "g_idx" and key not in reader:  # writers omit it without act-order
            out[tensor_name] = default_g_idx(layer.in_features, layer.cfg.group_size)
            continue
        tensor = read(key)
        out[tensor_name] = tensor.to(torch.float16 if tensor_name == "scales" else
                                     torch.float32 if tensor_name == "bias" else torch.int32)
    return out


def _state_dict(model: Qwen3_5Model, reader: CheckpointReader, dtype: torch.dtype) -> tuple[dict, set]:
    """Our state dict from the checkpoint (fusing projection groups); also the checkpoint keys it used."""
    from ..gptq import GPTQLinear

    state, used = {}, set()

    def read(key: str) -> torch.Tensor:
        used.add(key)
        return reader.get(key)

    handled: list[str] = []   # modules whose children were filled with them
    for name, module in model.named_modules():
        if module is model or any(name.startswith(h + ".") for h in handled):
            continue
        prefix = f"{name}."
        parent = name.rpartition(".")[0]
        parent_prefix = f"{parent}." if parent else ""
        if isinstance(module, FusedLinear):
            parts = [read(f"{parent_prefix}{p}.weight") for p in module.part_names]
            for part, tensor, size in zip(module.part_names, parts, module.out_sizes):
                if tuple(tensor.shape) != (size, module.in_features):
                    raise ValueError(f"{reader.path}: {parent_prefix}{part}.weight has shape {tuple(tensor.shape)}, "
                                     f"expected {(size, module.in_features)} from config.json")
            state[f"{prefix}weight"] = torch.cat(parts, dim=0).to(dtype)
        elif isinstance(module, SplitLinear):
            handled.append(name)
            for part in module.part_names:
                layer, source = module.parts[part], f"{parent_prefix}{part}"
                tensors = (_gptq_tensors(layer, source, reader, read) if isinstance(layer, GPTQLinear)
                           else {"weight": read(f"{source}.weight").to(dtype)})
                state.update({f"{prefix}parts.{part}.{k}": v for k, v in tensors.items()})
        elif isinstance(module, GPTQLinear):
            state.update({f"{prefix}{k}": v for k, v in _gptq_tensors(module, name, reader, read).items()})
        elif isinstance(module, GatedDeltaNet):
            conv = read(f"{prefix}conv1d.weight")                   # [C, 1, K] -> [C, K]
            state[f"{prefix}conv_weight"] = conv.reshape(conv.shape[0], conv.shape[-1]).to(dtype)
            for p in FLOAT32_PARAMS:                                # exp(A_log) overflows in fp16
                state[f"{prefix}{p}"] = read(f"{prefix}{p}").to(torch.float32)
        else:
            for tensor_name, _ in module.named_parameters(recurse=False):
                state[f"{prefix}{tensor_name}"] = read(f"{prefix}{tensor_name}").to(dtype)
    return state, used


def build_qwen3_5(config: dict, reader, *, dtype: torch.dtype, device: torch.device | str,
                  output_token_ids: Sequence[int] = (), quant: dict | None = None) -> Qwen3_5Model:
    """Our model from a config dict and a tensor reader (CheckpointReader or StateDictReader)."""
    args = Qwen3_5Args.from_config(config)
    with torch.device("meta"):
        model = Qwen3_5Model(args, num_output_rows=len(output_token_ids))
    if quant is not None and str(quant.get("quant_method", "")).lower() == "gptq":
        from ..gptq import QuantConfig

        gptq_cfg = QuantConfig.from_json(quant, where=f"{reader.path} quantization_config")
        swapped = _swap_gptq(model, reader, gptq_cfg)
        log.info("packed: %d GPTQ layers in %s", len(swapped), reader.path)

    state, used = _state_dict(model, reader, dtype)
    ids = [int(i) for i in output_token_ids]
    bad = [i for i in ids if not 0 <= i < args.vocab_size]
    if bad:
        raise ValueError(f"output token ids {bad} are outside the vocabulary (size {args.vocab_size})")
    # Without an lm_head tensor the head IS the embedding, whatever the config says (Qwen3.5's
    # config class defaults to untied, and a multimodal config may say "tied" at the top level only).
    untied = not args.tie_word_embeddings and "lm_head.weight" in reader
    head_key = "lm_head.weight" if untied else "embed_tokens.weight"
    head = reader.get(head_key)
    state["output_rows"] = head[ids].to(torch.float32) if ids else head.new_empty(0, args.hidden_size).float()
    used.add(head_key)

    # A tied lm_head.weight may be stored too (it is the embedding); anything else unused is a layout
    # or config we do not know, and silently dropping it could give wrong numbers.
    unused = sorted(reader.keys() - used - {"lm_head.weight"})
    if unused:
        raise ValueError(f"{reader.path}: {len(unused)} tensors are not used by the packed Qwen3.5 model, "
                         f"e.g. {unused[:5]} (a layout or config this loader does not know)")
    model.load_state_dict(state, strict=True, assign=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


def load_qwen3_5(path: str | Path, *, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu",
                 output_token_ids: Sequence[int] = ()) -> Qwen3_5Model:
    """An eval-mode packed Qwen3.5 from a checkpoint dir, on `device` in `dtype`.

    output_token_ids: tokens whose head rows (tied embedding, or lm_head when untied) are copied
    into `model.output_rows` (float32 [n, hidden]) for candidate logits.
    """
    from ..gptq.format import read_quant_json

    path = Path(path)
    return build_qwen3_5(read_config(path), CheckpointReader(path, device), dtype=dtype, device=device,
                         output_token_ids=output_token_ids, quant=read_quant_json(path))


def from_hf_model(hf_model: nn.Module, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                  output_token_ids: Sequence[int] = ()) -> Qwen3_5Model:
    """Our model built from an in-memory transformers Qwen3.5 (either class), for benches.

    dtype / device default to the model's own. Unfused tensors are shared with the transformers
    model when dtype and device match; the fused projections are new tensors (~0.9x the model's
    memory while both exist: drop the transformers model afterwards to free it).
    """
    first = next(hf_model.parameters())
    return build_qwen3_5(hf_model.config.to_dict(), StateDictReader(hf_model.state_dict(), "in-memory model"),
                         dtype=dtype or first.dtype, device=device or first.device, output_token_ids=output_token_ids)
