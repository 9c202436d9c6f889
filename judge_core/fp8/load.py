"""The FP8 quantization plug-in (judge_core.quant) and FP8 at load time: what `quantization=` asks
for, the checks made before anything is loaded, and the two ways an FP8 model comes about.

- quantize-at-load: a float (bf16 / fp32) checkpoint loaded as usual, then `quantize_model_fp8_`
  (W8A8 dynamic, per-channel weights) on the built model, hf or packed (`FP8Plan.apply_`);
- a pre-quantized checkpoint (`quant_method: "fp8"`), the plug-in: `wrap_reader` serves its fp8 weights
  dequantized (FP8CheckpointReader), the loader builds a float model, and `after_load` swaps exactly the
  checkpoint's fp8 layers back to FP8Linear. Weights pass through the model dtype before the swap, so
  with bf16 they are rounded to bf16 once before fp8 (block-scaled ones are re-rounded per channel
  anyway, fp8.linear).

    plan = plan_fp8("fp8", ckpt.quant, device, "auto")   # raises before loading
    backend = load_backend(..., fp8=plan)                  # plan.apply_(backend.model)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .format import FP8Config
from .linear import COMPUTE, FP8Linear, resolve_compute
from .reader import FP8CheckpointReader
from .swap import quantize_model_fp8_

log = logging.getLogger(__name__)

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


def plan_fp8(quantization, quant, device: torch.device | str, compute: str = "auto",
             where: str = "the checkpoint") -> FP8Plan | None:
    """Before loading: None when nothing is FP8, else the plan; raises for what cannot work, naming it
    (an unknown value, fp8 on an already-quantized non-fp8 checkpoint, a CUDA device without FP8 GEMMs).

    quant: the checkpoint's parsed quantization (`Checkpoint.quant`: judge_core.quant.Quantization),
    None when float. A pre-quantized FP8 checkpoint runs in fp8 whatever `quantization` says.
    """
    from ..quant import check_quantization

    quantization, compute = check_quantization(quantization), check_fp8_compute(compute)
    device = torch.device(device)
    method = None if quant is None else quant.method
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


# -- the plug-in: pre-quantized checkpoints ------------------------------------------------------------
class _FP8Plugin:
    name = "fp8"

    def parse(self, quant_json: dict, where: str) -> FP8Config:
        return FP8Config.from_json(quant_json, where=where)

    def wrap_reader(self, reader, cfg: FP8Config) -> FP8CheckpointReader:
        return FP8CheckpointReader(reader, cfg)

    def swap_modules(self, model: nn.Module, reader, cfg: FP8Config, *, key_prefix: str = "",
                     external: tuple[str, ...] = (), fuse: bool = True) -> list[str]:
        return []  # FP8Linears are built from loaded weights: after_load

    def after_load(self, model: nn.Module, reader: FP8CheckpointReader, cfg: FP8Config, *,
                   key_prefix: str = "") -> None:
        # Module names are the checkpoint keys without key_prefix (the packed model's "model.").
        names = [m.removeprefix(key_prefix) for m in reader.fp8_modules]
        swapped = quantize_model_fp8_(model, only=set(names))
        _check_all_swapped(reader.path, swapped, names)


FP8 = _FP8Plugin()


def _check_all_swapped(path, swapped: list[str], fp8_modules: list[str]) -> None:
    """A layer stored in fp8 but left float by the swap (a skip-list name, a bias, an odd shape) runs its
    stored values dequantized, without activation rounding: not dropped, but said, since it differs from
    what an fp8 engine computes."""
    left = sorted(set(fp8_modules) - set(swapped))
    if left:
        log.warning("fp8: %s: %d layers stored in fp8 run dequantized in float here (see the log above for why), "
                    "e.g. %s", path, len(left), left[:3])
    log.info("fp8: %s: %d layers in fp8", path, len(swapped))
