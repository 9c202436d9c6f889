"""FP8 at load time, for every loader: what `quantization=` asks for, the checks made before anything
is loaded, and the two ways an FP8 model comes about.

- quantize-at-load: a float (bf16 / fp32) checkpoint loaded as usual, then `quantize_model_fp8_`
  (W8A8 dynamic, per-channel weights) on the built model, hf or packed (`FP8Plan.apply_`);
- a pre-quantized checkpoint (`quant_method: "fp8"`): read through `FP8CheckpointReader` (fp8 weights
  served dequantized), built as a float model, then exactly the checkpoint's fp8 layers swapped back
  (`load_fp8_packed`, `load_fp8_hf_model`). Weights pass through the model dtype before the swap, so
  with bf16 they are rounded to bf16 once before fp8 (block-scaled ones are re-rounded per channel anyway,
  fp8.linear).

    plan = plan_fp8("fp8", quantization_config(path), device, "auto")   # raises before loading
    backend = load_backend(..., fp8=plan)                                 # plan.apply_(backend.model)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .format import FP8Config
from .linear import COMPUTE, FP8Linear, resolve_compute
from .reader import FP8CheckpointReader
from .swap import quantize_model_fp8_

log = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "fp8")   # what `quantization=` / `--quantization` take; None means "none"


def check_quantization(value) -> str | None:
    """None / "none" -> None, "fp8" -> "fp8"; anything else is a ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in QUANTIZATIONS:
        return None if value.lower() == "none" else value.lower()
    raise ValueError(f"quantization={value!r} is not supported: expected None, 'none' or 'fp8'")


def check_fp8_compute(value) -> str:
    if value not in COMPUTE:
        raise ValueError(f"fp8_compute={value!r}: expected one of {COMPUTE}")
    return value


@dataclass(frozen=True)
class FP8Plan:
    """How a loaded model becomes (or stays) FP8: quantize it after loading, or not (stored fp8),
    and the compute every FP8 layer runs ("twin" | "scaled_mm", resolved for the device)."""

    quantize_at_load: bool
    compute: str

    def apply_(self, model: nn.Module) -> nn.Module:
        if self.quantize_at_load:
            quantize_model_fp8_(model, compute=self.compute)
        set_fp8_compute_(model, self.compute)
        return model


def plan_fp8(quantization, quant: dict | None, device: torch.device | str, compute: str = "auto",
             where: str = "the checkpoint") -> FP8Plan | None:
    """Before loading: None when nothing is FP8, else the plan; raises for what cannot work, naming it
    (an unknown value, fp8 on an already-quantized non-fp8 checkpoint, a CUDA device without FP8 GEMMs).

    quant: the checkpoint's `quantization_config` (checkpoint.quantization_config), None when float.
    A pre-quantized FP8 checkpoint runs in fp8 whatever `quantization` says (None = as stored).
    """
    quantization, compute = check_quantization(quantization), check_fp8_compute(compute)
    device = torch.device(device)
    method = None if quant is None else quant.get("quant_method")
    if quantization == "fp8" and method not in (None, "fp8"):
        raise ValueError(f"quantization='fp8' cannot apply to {where}: it is already quantized "
                         f"(quant_method={method!r}); load a float checkpoint with quantization='fp8', "
                         "or this one without quantization")
    if quantization is None and method != "fp8":
        return None
    asked = "quantization='fp8'" if quantization == "fp8" else f"{where} (quant_method 'fp8')"
    try:
        resolved = resolve_compute(compute, device)
    except ValueError as e:
        raise ValueError(f"{asked}: {e}") from None
    if resolved == "twin":
        log.warning("fp8 on %s runs the CPU twin (fp8 rounding, then an fp32 matmul): exact, but slower than "
                    "the float model; the fast path is torch._scaled_mm on a CUDA GPU of sm_89 or newer", device)
    return FP8Plan(quantize_at_load=method != "fp8", compute=resolved)


def set_fp8_compute_(model: nn.Module, compute: str) -> None:
    """Make every FP8Linear of `model` compute with `compute` (re-resolved on its next forward)."""
    check_fp8_compute(compute)
    for module in model.modules():
        if isinstance(module, FP8Linear):
            module.compute, module._resolved = compute, None


# -- pre-quantized checkpoints --------------------------------------------------------------------------
def fp8_reader(path: str | Path, quant: dict, device) -> FP8CheckpointReader:
    from ..checkpoint import TensorReader

    cfg = FP8Config.from_json(quant, where=f"{path}/config.json quantization_config")
    return FP8CheckpointReader(TensorReader(path, device), cfg)


def load_fp8_packed(path: str | Path, config: dict, quant: dict, *, dtype: torch.dtype, device,
                    output_token_ids: Sequence[int] = ()) -> nn.Module:
    """The packed model of an FP8 checkpoint, its fp8 layers as FP8Linear / FP8FusedLinear parts."""
    from ..models.weights import KEY_PREFIX, build_qwen3_5

    reader = fp8_reader(path, quant, device)
    model = build_qwen3_5(config, reader, dtype=dtype, device=device, output_token_ids=output_token_ids)
    # Our packed names are the causal-LM keys without "model." (models.weights).
    swapped = quantize_model_fp8_(model, only={m.removeprefix(KEY_PREFIX) for m in reader.fp8_modules})
    _check_all_swapped(path, swapped, [m.removeprefix(KEY_PREFIX) for m in reader.fp8_modules])
    return model


def load_fp8_hf_model(path: str | Path, quant: dict, *, dtype: torch.dtype, device) -> nn.Module:
    """An FP8 checkpoint as a transformers causal LM (built on meta without its quantization_config,
    so transformers' own FP8 integration is never involved), its fp8 layers as FP8Linear."""
    from ..gptq.loader import _assign, _meta_tensors, _tie_embeddings, build_empty_model
    from ..hf_kernels import use_exact_torch_kernels

    device = torch.device(device)
    reader = fp8_reader(path, quant, device)
    model = build_empty_model(path, dtype)
    unexpected = []
    for key in sorted(reader.keys()):
        tensor = reader.get(key)
        if not _assign(model, key, tensor.to(dtype) if tensor.is_floating_point() else tensor):
            unexpected.append(reader.raw_key(key))
    if unexpected:
        log.warning("fp8: %d checkpoint tensors not used by the model, e.g. %s", len(unexpected), unexpected[:3])
    _tie_embeddings(model)
    missing = _meta_tensors(model)
    if missing:
        raise ValueError(f"{path}: the checkpoint does not provide {len(missing)} model tensors, e.g. {missing[:5]}")
    model = model.to(device).eval()
    swapped = quantize_model_fp8_(model, only=set(reader.fp8_modules))
    _check_all_swapped(path, swapped, reader.fp8_modules)
    use_exact_torch_kernels(model)  # fla installed on a CPU machine would crash in Triton (hf_kernels.py)
    return model


def _check_all_swapped(path, swapped: list[str], fp8_modules: list[str]) -> None:
    """A layer stored in fp8 but left float by the swap (a skip-list name, a bias, an odd shape) runs its
    stored values dequantized, without activation rounding: not dropped, but said, since it differs from
    what an fp8 engine computes."""
    left = sorted(set(fp8_modules) - set(swapped))
    if left:
        log.warning("fp8: %s: %d layers stored in fp8 run dequantized in float here (see the log above for why), "
                    "e.g. %s", path, len(left), left[:3])
    log.info("fp8: %s: %d layers in fp8", path, len(swapped))
