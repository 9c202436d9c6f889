"""Safetensors -> our Qwen3.5 model: both checkpoint layouts, sharded or not, dense or GPTQ.

The model is built on the meta device (no memory, no init), each tensor is read from the mmap'ed
safetensors files, and the state dict is assigned in one `load_state_dict(assign=True)` (gpt-fast's
way). Fusions happen here: q/k/v, Gated DeltaNet's qkv/z/b/a and the MLP's gate/up are concatenated
into one weight each. A GPTQ checkpoint's 4-bit layers become `GPTQLinear`s (judge_core.gptq) and a
projection group holding one of them stays unfused (`SplitLinear`).

Checkpoint keys come through judge_core.checkpoint (one key map for both layouts: text-only
`model.layers.N...`, multimodal `model.language_model.layers.N...`; `model.visual.*` and `mtp.*` are
not used by the judge and never read). The candidate head rows are read by the function the hf backend
uses too (judge_core/candidate_head.py), so a GPTQ-quantized lm_head loads here as well.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..checkpoint import TensorReader, quantization_config, read_config, text_config
from .linear import FusedLinear, SplitLinear
from .qwen3_5 import GatedDeltaNet, Qwen3_5Args, Qwen3_5Model

log = logging.getLogger(__name__)

# Our module names are the causal-LM checkpoint keys without this prefix (`layers.0...` is
# `model.layers.0...`); checkpoint.KEY_MAP already folded the multimodal layout into it.
KEY_PREFIX = "model."
FLOAT32_PARAMS = ("A_log", "dt_bias")                   # kept in float32 whatever the model dtype


def _gptq_tensors(layer, source: str, reader: TensorReader, read) -> dict[str, torch.Tensor]:
    """A GPTQLinear's buffers from checkpoint layer `source`, in the dtypes GPTQLinear expects."""
    from ..gptq.format import default_g_idx

    out = {}
    for tensor_name in ("qweight", "qzeros", "scales", "g_idx", "bias"):
        key = f"{source}.{tensor_name}"
        if tensor_name == "bias" and layer.bias is None:
            continue
        if tensor_name == "g_idx" and KEY_PREFIX + key not in reader:  # writers omit it without act-order
            out[tensor_name] = default_g_idx(layer.in_features, layer.cfg.group_size)
            continue
        tensor = read(key)
        out[tensor_name] = tensor.to(torch.float16 if tensor_name == "scales" else
                                     torch.float32 if tensor_name == "bias" else torch.int32)
    return out


def _state_dict(model: Qwen3_5Model, reader: TensorReader, dtype: torch.dtype) -> tuple[dict, set]:
    """Our state dict from the checkpoint (fusing projection groups); also the checkpoint keys it used.

    Tensor names below are ours (`layers.0.mlp.down_proj.weight`); `read` adds the checkpoint prefix."""
    from ..gptq import GPTQLinear

    state, used = {}, set()

    def read(key: str) -> torch.Tensor:
        used.add(KEY_PREFIX + key)
        return reader.get(KEY_PREFIX + key)

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


def _head_module(reader: TensorReader, args: Qwen3_5Args, gptq_cfg, used: set):
    """The output head as the checkpoint stores it: a GPTQ lm_head, an untied lm_head weight, or the
    tied embedding. Without an lm_head tensor the head IS the embedding, whatever the config says
    (Qwen3.5's config class defaults to untied; a multimodal config may say "tied" at the top only)."""
    if "lm_head.qweight" in reader:
        from ..gptq import GPTQLinear
        from ..gptq.format import default_g_idx

        if gptq_cfg is None:
            raise ValueError(f"{reader.path}: lm_head.qweight without a GPTQ quantization_config")
        keys = [k for k in reader.keys() if k.startswith("lm_head.")]
        used.update(keys)
        tensors = {k.removeprefix("lm_head."): reader.get(k) for k in keys}
        tensors.setdefault("g_idx", default_g_idx(tensors["qweight"].shape[0] * 8, gptq_cfg.group_size))
        return GPTQLinear.from_packed(tensors, gptq_cfg, bias=tensors.get("bias"))
    if not args.tie_word_embeddings and "lm_head.weight" in reader:
        used.update(k for k in ("lm_head.weight", "lm_head.bias") if k in reader)
        head = torch.nn.Linear(args.hidden_size, args.vocab_size, bias="lm_head.bias" in reader, device="meta")
        head.weight = torch.nn.Parameter(reader.get("lm_head.weight"), requires_grad=False)
        if head.bias is not None:
            head.bias = torch.nn.Parameter(reader.get("lm_head.bias"), requires_grad=False)
        return head
    used.add(KEY_PREFIX + "embed_tokens.weight")
    return reader.get(KEY_PREFIX + "embed_tokens.weight")


def build_qwen3_5(config: dict, reader: TensorReader, *, dtype: torch.dtype, device: torch.device | str,
                  output_token_ids: Sequence[int] = (), quant: dict | None = None) -> Qwen3_5Model:
    """Our model from a config dict and a tensor reader (a checkpoint dir's or a state dict's)."""
    from ..candidate_head import read_candidate_head

    args = Qwen3_5Args.from_config(config)
    with torch.device("meta"):
        model = Qwen3_5Model(args, num_output_rows=len(output_token_ids))
    gptq_cfg = None
    if quant is not None and quant.get("quant_method") == "gptq":
        from ..gptq import QuantConfig
        from ..gptq.swap import swap_gptq_linears

        gptq_cfg = QuantConfig.from_json(quant, where=f"{reader.path} quantization_config")
        swapped = swap_gptq_linears(model, reader.shapes(), gptq_cfg, key_prefix=KEY_PREFIX, external=("lm_head",))
        log.info("packed: %d GPTQ layers in %s", len(swapped), reader.path)
    elif quant is not None:
        raise ValueError(f"{reader.path}: quant_method={quant.get('quant_method')!r} is not supported by the "
                         "packed backend")

    state, used = _state_dict(model, reader, dtype)
    ids = [int(i) for i in output_token_ids]
    bad = [i for i in ids if not 0 <= i < args.vocab_size]
    if bad:
        raise ValueError(f"output token ids {bad} are outside the vocabulary (size {args.vocab_size})")
    head = read_candidate_head(_head_module(reader, args, gptq_cfg, used), ids,
                               softcap=text_config(config).get("final_logit_softcapping"))
    if head.bias is not None or head.softcap:
        raise ValueError(f"{reader.path}: the packed backend applies no lm_head bias or logit softcap; use backend='hf'")
    state["output_rows"] = head.rows

    # A tied lm_head.weight may be stored too (it is the embedding); anything else unused is a layout
    # or config we do not know, and silently dropping it could give wrong numbers.
    unused = sorted(reader.keys() - used - {"lm_head.weight"})
    if unused:
        raise ValueError(f"{reader.path}: {len(unused)} tensors are not used by the packed Qwen3.5 model, "
                         f"e.g. {[reader.raw_key(k) for k in unused[:5]]} (a layout or config this loader does not know)")
    model.load_state_dict(state, strict=True, assign=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


def load_qwen3_5(path: str | Path, *, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu",
                 output_token_ids: Sequence[int] = ()) -> Qwen3_5Model:
    """An eval-mode packed Qwen3.5 from a resolved checkpoint dir, on `device` in `dtype`.

    output_token_ids: tokens whose head rows (tied embedding, or lm_head when untied, dequantized when
    GPTQ) are copied into `model.output_rows` (float32 [n, hidden]) for candidate logits.
    An FP8 checkpoint (quant_method "fp8") loads with its fp8 layers in fp8 (judge_core.fp8.load).
    """
    path = Path(path)
    config = read_config(path)
    quant = quantization_config(path, config)
    if quant is not None and quant["quant_method"] == "fp8":
        from ..fp8.load import load_fp8_packed

        return load_fp8_packed(path, config, quant, dtype=dtype, device=device, output_token_ids=output_token_ids)
    return build_qwen3_5(config, TensorReader(path, device), dtype=dtype, device=device,
                         output_token_ids=output_token_ids, quant=quant)


def from_hf_model(hf_model: nn.Module, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                  output_token_ids: Sequence[int] = ()) -> Qwen3_5Model:
    """Our model built from an in-memory transformers Qwen3.5 (either class), for benches.

    dtype / device default to the model's own. Unfused tensors are shared with the transformers
    model when dtype and device match; the fused projections are new tensors (~0.9x the model's
    memory while both exist: drop the transformers model afterwards to free it).
    """
    first = next(hf_model.parameters())
    reader = TensorReader.from_state_dict(hf_model.state_dict(), "in-memory model")
    return build_qwen3_5(hf_model.config.to_dict(), reader, dtype=dtype or first.dtype, device=device or first.device,
                         output_token_ids=output_token_ids)
