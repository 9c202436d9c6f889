"""Float checkpoint -> GPTQ 4-bit checkpoint (and back, for reference runs).

`quantize_checkpoint(src, out, method="gptq"|"rtn", ...)` writes the format of DESIGN §4 in the source's
own layout: every tensor of the source is copied as is, except the weights of quantized Linears,
which become `qweight/qzeros/scales/g_idx`. Embeddings, lm_head, the vision tower and Linears whose
shape does not divide stay float; so does any layer whose scales would not fit fp16 (DESIGN §4: a few
Qwen3.5-4B tensors hold values of 1e19..1e36), with a warning naming it.

GPTQ itself runs layer by layer in sequential.py; the math of one matrix is in algorithm.py.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from ..hf_kernels import use_exact_torch_kernels
from .algorithm import pack_layer
from .format import PACK, QuantConfig
from ..checkpoint import Checkpoint, iter_raw_tensors, quantization_json, read_config, text_config
from .sequential import METHODS, quantize_one, quantizable_linears, quantize_model

log = logging.getLogger(__name__)

MAX_SHARD_BYTES = 4 * 1024**3


def resolve_source(src: str | Path, revision: str | None = None) -> Path:
    """A checkpoint dir for a local dir, a hub id (through the HF cache) or "tiny" (the embedded judge)."""
    from ..embedded.resolve import resolve_model

    return resolve_model(src, revision=revision)


def _write_tensors(tensors: dict[str, torch.Tensor], out: Path, max_shard_bytes: int) -> None:
    """model.safetensors, or shards + model.safetensors.index.json when larger than max_shard_bytes."""
    from safetensors.torch import save_file

    shards, current, size = [], {}, 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[key] = t.contiguous()
        size += nbytes
    shards.append(current)
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata=meta)
        return
    weight_map = {}
    for n, shard in enumerate(shards, 1):
        file = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / file), metadata=meta)
        weight_map.update({k: file for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def _copy_side_files(src: Path, out: Path) -> None:
    """Tokenizer, chat template, generation config: everything but weights and config.json."""
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy2(f, out / f.name)


def quantize_checkpoint(src: str | Path, out: str | Path, *, method: str = "gptq", group_size: int = 128,
                        desc_act: bool = False, sym: bool = True, checkpoint_format: str = "gptq",
                        calib: str | Path | None = None, calib_n: int = 128, calib_max_tokens: int = 2048,
                        damp: float = 0.01, block_size: int = 128, device=None,
                        compute_dtype: torch.dtype = torch.float32, max_shard_bytes: int = MAX_SHARD_BYTES,
                        revision: str | None = None) -> Path:
    """Write a GPTQ 4-bit copy of the float checkpoint `src` ("tiny" = embedded judge) into `out`.

    method "rtn" (no data) or "gptq" (Hessians from judge-style calibration prompts: `calib` pairs file or
    the built-in pairs, `calib_n` prompts of at most `calib_max_tokens` tokens). desc_act needs "gptq".
    The calibration forwards run in `compute_dtype` on `device` (default: CUDA when present); bfloat16
    halves the memory of the float model (17 GB in fp32 for the 4B). Hessians and rounding are always fp32.
    Returns the output dir.
    """
    if method not in METHODS:
        raise ValueError(f"unknown quantization method {method!r}: expected one of {METHODS}")
    if desc_act and method != "gptq":
        raise ValueError("desc_act (act-order) needs the Hessian: use method='gptq'")
    cfg = QuantConfig.from_json({"bits": 4, "group_size": group_size, "desc_act": desc_act, "sym": sym,
                                 "checkpoint_format": checkpoint_format}, where="quantize options")
    src = resolve_source(src, revision)
    config = read_config(src)
    existing = quantization_json(src, config)
    if existing is not None:
        raise ValueError(f"{src} is already quantized ({existing['quant_method']}): "
                         "quantize a float checkpoint")
    out = Path(out)
    if out.resolve() == src.resolve():
        raise ValueError(f"output dir {out} is the source dir")
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n_packed = 0

    if method == "gptq":
        packed, kept_float = _gptq_checkpoint_layers(src, cfg, calib=calib, calib_n=calib_n,
                                                     calib_max_tokens=calib_max_tokens, damp=damp,
                                                     block_size=block_size, device=device,
                                                     compute_dtype=compute_dtype)
    else:
        # RTN needs no activations: only the model's structure (on meta), then one weight at a time.
        from ..loader import build_empty_model

        targets, kept_float = quantizable_linears(build_empty_model(config, torch.float32), cfg)
        packed = {}

    tensors = {}
    for ckpt_key, key, tensor in iter_raw_tensors(src):
        layer = key.removesuffix(".weight") if key and key.endswith(".weight") else None
        if method == "rtn" and layer in targets:
            qw = quantize_one(layer, tensor.to(device), cfg, "rtn")
            if qw is None:
                kept_float[layer] = "weights or scales not finite in fp16"
            else:
                packed[layer] = pack_layer(qw, cfg)
        if layer in packed:
            ckpt_prefix = ckpt_key.removesuffix(".weight")
            tensors.update({f"{ckpt_prefix}.{part}": t for part, t in packed.pop(layer).items()})
            n_packed += 1
        else:
            tensors[ckpt_key] = tensor
    _write_tensors(tensors, out, max_shard_bytes)

    config = json.loads(json.dumps(config))   # a copy to edit
    config["quantization_config"] = dict(
        cfg.to_json(), damp_percent=damp, true_sequential=False, static_groups=False,
        meta={"quantizer": "judge_core", "method": method, "float_layers": dict(sorted(kept_float.items()))})
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    _copy_side_files(src, out)
    log.info("GPTQ: wrote %s: %d layers quantized, %d kept float", out, n_packed, len(kept_float))
    return out


def _gptq_checkpoint_layers(src: Path, cfg: QuantConfig, *, calib, calib_n: int, calib_max_tokens: int, damp: float,
                            block_size: int, device, compute_dtype: torch.dtype) -> tuple[dict, dict]:
    """GPTQ on the float model of `src` with judge-style calibration prompts -> (packed, kept float)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .calibration import builtin_pairs, calibration_token_ids, load_pairs

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=compute_dtype).to(device).eval()
    use_exact_torch_kernels(model)  # the calibration forward: no Triton on CPU tensors (hf_kernels.py)
    pairs = load_pairs(calib) if calib else builtin_pairs()
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    samples = [torch.tensor(ids) for ids in
               calibration_token_ids(tokenizer, pairs, n_prompts=calib_n, max_tokens=calib_max_tokens)]
    log.info("GPTQ: %d calibration prompts, %d tokens", len(samples), sum(len(s) for s in samples))
    return quantize_model(model, cfg, method="gptq", samples=samples, damp=damp, block_size=block_size)


@torch.no_grad()
def dequantize_checkpoint(qpath: str | Path, out: str | Path, *, dtype: torch.dtype = torch.float32) -> Path:
    """Write a float copy of a GPTQ checkpoint: each quantized layer's W = scales * (q - z) from the stored
    fp16 scales, in `dtype`, through the reference twin. The config loses its quantization_config.

    This is the model a GPTQ judge computes, as a plain checkpoint (reference runs, other engines).
    """
    from .dequant import dequantize_reference
    qpath, out = Path(qpath), Path(out)
    ckpt = Checkpoint.open(qpath)
    if ckpt.quant_method != "gptq":
        raise ValueError(f"{qpath}: not a GPTQ checkpoint")
    cfg = ckpt.quant.config
    out.mkdir(parents=True, exist_ok=True)
    raw = {k: t for k, _, t in iter_raw_tensors(qpath)}
    tensors = {}
    for key, t in raw.items():
        prefix, _, part = key.rpartition(".")
        if part == "qweight":
            n_in = t.shape[0] * PACK
            g_idx = raw.get(f"{prefix}.g_idx")
            if g_idx is None:
                from .format import default_g_idx

                g_idx = default_g_idx(n_in, cfg.group_size)
            w_t = dequantize_reference(t, raw[f"{prefix}.qzeros"], raw[f"{prefix}.scales"], g_idx, cfg, torch.float32)
            tensors[f"{prefix}.weight"] = w_t.t().contiguous().to(dtype)
        elif part in ("qzeros", "scales", "g_idx") and f"{prefix}.qweight" in raw:
            continue
        else:
            tensors[key] = t
    _write_tensors(tensors, out, MAX_SHARD_BYTES)
    config = json.loads(json.dumps(ckpt.config))   # a copy to edit
    config.pop("quantization_config", None)
    text_config(config).pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    _copy_side_files(qpath, out)
    return out
