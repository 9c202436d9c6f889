"""The packed loader: a Checkpoint -> our Qwen3.5 model; both checkpoint layouts, sharded or not, float
or quantized through a plug-in (judge_core.quant: GPTQ, FP8).

The model is built on the meta device (no memory, no init), the quantization plug-in swaps its modules
in, each tensor is read from the mmap'ed safetensors files (through the plug-in's reader), and the state
dict is assigned in one `load_state_dict(assign=True)` (gpt-fast's way). Fusions happen here: q/k/v,
Gated DeltaNet's qkv/z/b/a and the MLP's gate/up are concatenated into one weight each, GPTQ ones too
(FusedGPTQLinear) unless their parts cannot be concatenated (then `SplitLinear`, gptq/swap.py says why).

Checkpoint keys come through judge_core.checkpoint (one key map for both layouts: text-only
`model.layers.N...`, multimodal `model.language_model.layers.N...`; `model.visual.*` and `mtp.*` are
not used by the judge and never read). The label tokens' head rows are read by the function the hf backend
uses too (judge_core/candidate_head.py), so a GPTQ-quantized lm_head loads here as well.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import torch
from torch import nn

from ..checkpoint import Checkpoint, TensorReader
from .linear import FusedLinear, SplitLinear
from .qwen3_5 import GatedDeltaNet, Qwen3_5Args, Qwen3_5Model

log = logging.getLogger(__name__)

# Our module names are the causal-LM checkpoint keys without this prefix (`layers.0...` is
# `model.layers.0...`); checkpoint.KEY_MAP already folded the multimodal layout into it.
KEY_PREFIX = "model."
FLOAT32_PARAMS = ("A_log", "dt_bias")                   # kept in float32 whatever the model dtype


def _module_tensors(module: nn.Module, source: str, read, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A leaf module's own parameters and buffers read from checkpoint layer `source`.

    Float tensors go to the model dtype, except where the module keeps another dtype on purpose: the
    meta tensor's dtype decides for integer tensors and fp16 ones (GPTQ's qweight / g_idx, fp16 scales),
    and float32 ones a plug-in asked for (a GPTQ bias)."""
    out = {}
    own = list(module.named_parameters(recurse=False)) + [
        (n, b) for n, b in module.named_buffers(recurse=False) if n not in module._non_persistent_buffers_set]
    quantized = any(not t.is_floating_point() for _, t in own)
    for name, target in own:
        tensor = read(f"{source}.{name}")
        keep = not target.is_floating_point() or target.dtype == torch.float16 or quantized
        out[name] = tensor.to(target.dtype if keep else dtype)
    return out


def _state_dict(model: Qwen3_5Model, reader, dtype: torch.dtype) -> tuple[dict, set]:
    """Our state dict from the checkpoint (fusing projection groups); also the checkpoint keys it used.

    Tensor names below are ours (`layers.0.mlp.down_proj.weight`); `read` adds the checkpoint prefix."""
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
        elif hasattr(module, "state_from_parts"):     # a plug-in's fused group (gptq.fused.FusedGPTQLinear)
            handled.append(name)
            tensors = module.state_from_parts(lambda part, t: read(f"{parent_prefix}{part}.{t}"), dtype)
            state.update({f"{prefix}{k}": v for k, v in tensors.items()})
        elif isinstance(module, SplitLinear):
            handled.append(name)
            for part in module.part_names:
                tensors = _module_tensors(module.parts[part], f"{parent_prefix}{part}", read, dtype)
                state.update({f"{prefix}parts.{part}.{k}": v for k, v in tensors.items()})
        elif isinstance(module, GatedDeltaNet):
            conv = read(f"{prefix}conv1d.weight")                   # [C, 1, K] -> [C, K]
            state[f"{prefix}conv_weight"] = conv.reshape(conv.shape[0], conv.shape[-1]).to(dtype)
            for p in FLOAT32_PARAMS:                                # exp(A_log) overflows in fp16
                state[f"{prefix}{p}"] = read(f"{prefix}{p}").to(torch.float32)
        else:                                       # nn.Linear, GPTQLinear, norms, embeddings: own tensors
            tensors = _module_tensors(module, name, read, dtype)
            state.update({f"{prefix}{k}": v for k, v in tensors.items()})
    return state, used


def _head_module(reader, args: Qwen3_5Args, quant, used: set):
    """The output head as the checkpoint stores it: a GPTQ lm_head, an untied lm_head weight, or the
    tied embedding. Without an lm_head tensor the head IS the embedding, whatever the config says
    (Qwen3.5's config class defaults to untied; a multimodal config may say "tied" at the top only)."""
    if "lm_head.qweight" in reader:
        from ..gptq import GPTQLinear, QuantConfig

        if quant is None or not isinstance(quant.config, QuantConfig):
            raise ValueError(f"{reader.path}: lm_head.qweight without a GPTQ quantization_config")
        keys = [k for k in reader.keys() if k.startswith("lm_head.")]   # g_idx: the GPTQ reader implies it
        used.update(keys)
        tensors = {k.removeprefix("lm_head."): reader.get(k) for k in keys}
        return GPTQLinear.from_packed(tensors, quant.config, bias=tensors.get("bias"))
    if not args.tie_word_embeddings and "lm_head.weight" in reader:
        used.update(k for k in ("lm_head.weight", "lm_head.bias") if k in reader)
        head = torch.nn.Linear(args.hidden_size, args.vocab_size, bias="lm_head.bias" in reader, device="meta")
        head.weight = torch.nn.Parameter(reader.get("lm_head.weight"), requires_grad=False)
        if head.bias is not None:
            head.bias = torch.nn.Parameter(reader.get("lm_head.bias"), requires_grad=False)
        return head
    used.add(KEY_PREFIX + "embed_tokens.weight")
    return reader.get(KEY_PREFIX + "embed_tokens.weight")


def build_qwen3_5(checkpoint: Checkpoint, reader, *, dtype: torch.dtype, device: torch.device | str,
                  label_ids: Sequence[int] = (), fuse_quantized: bool = True) -> Qwen3_5Model:
    """Our model from a Checkpoint (config and quantization) and a tensor reader over its tensors (a
    checkpoint dir's or a state dict's). fuse_quantized=False keeps GPTQ projection groups split (the
    fused path's twin, for parity tests)."""
    from ..candidate_head import read_candidate_head

    args = Qwen3_5Args.from_config(checkpoint.config)
    with torch.device("meta"):
        model = Qwen3_5Model(args, num_label_rows=len(label_ids))
    quant = checkpoint.quant
    if quant is not None:
        reader = quant.plugin.wrap_reader(reader, quant.config)
        quant.plugin.swap_modules(model, reader, quant.config, key_prefix=KEY_PREFIX, external=("lm_head",),
                                  fuse=fuse_quantized)

    state, used = _state_dict(model, reader, dtype)
    ids = [int(i) for i in label_ids]
    bad = [i for i in ids if not 0 <= i < args.vocab_size]
    if bad:
        raise ValueError(f"label token ids {bad} are outside the vocabulary (size {args.vocab_size})")
    head = read_candidate_head(_head_module(reader, args, quant, used), ids,
                               softcap=checkpoint.text.get("final_logit_softcapping"))
    if head.bias is not None or head.softcap:
        raise ValueError(f"{reader.path}: the packed backend applies no lm_head bias or logit softcap; use backend='hf'")
    state["label_rows"] = head.rows

    # A tied lm_head.weight may be stored too (it is the embedding); anything else unused is a layout
    # or config we do not know, and silently dropping it could give wrong numbers.
    unused = sorted(reader.keys() - used - {"lm_head.weight"})
    if unused:
        raise ValueError(f"{reader.path}: {len(unused)} tensors are not used by the packed Qwen3.5 model, "
                         f"e.g. {[reader.raw_key(k) for k in unused[:5]]} (a layout or config this loader does not know)")
    model.load_state_dict(state, strict=True, assign=True)
    for p in model.parameters():
        p.requires_grad_(False)
    model = model.to(device).eval()
    if quant is not None:
        quant.plugin.after_load(model, reader, quant.config, key_prefix=KEY_PREFIX)
    return model


def load_qwen3_5(checkpoint: Checkpoint | str | os.PathLike, *, dtype: torch.dtype = torch.bfloat16,
                 device: torch.device | str = "cpu", label_ids: Sequence[int] = (),
                 fuse_quantized: bool = True) -> Qwen3_5Model:
    """An eval-mode packed Qwen3.5 from a Checkpoint (or a checkpoint dir / hub id), on `device` in `dtype`.

    label_ids: tokens whose head rows (tied embedding, or lm_head when untied, dequantized when
    GPTQ) are copied into `model.label_rows` (float32 [n, hidden]) for their logits.
    A GPTQ checkpoint keeps its 4-bit layers (GPTQLinear, FusedGPTQLinear), an FP8 one its fp8 layers.
    """
    ckpt = Checkpoint.open(checkpoint)
    return build_qwen3_5(ckpt, TensorReader(ckpt.path, device), dtype=dtype, device=device,
                         label_ids=label_ids, fuse_quantized=fuse_quantized)


def from_hf_model(hf_model: nn.Module, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                  label_ids: Sequence[int] = ()) -> Qwen3_5Model:
    """Our model built from an in-memory transformers Qwen3.5 (either class), for benches.

    dtype / device default to the model's own. Unfused tensors are shared with the transformers
    model when dtype and device match; the fused projections are new tensors (~0.9x the model's
    memory while both exist: drop the transformers model afterwards to free it).
    """
    first = next(hf_model.parameters())
    reader = TensorReader.from_state_dict(hf_model.state_dict(), "in-memory model")
    ckpt = Checkpoint.from_config(hf_model.config.to_dict())
    return build_qwen3_5(ckpt, reader, dtype=dtype or first.dtype, device=device or first.device,
                         label_ids=label_ids)
