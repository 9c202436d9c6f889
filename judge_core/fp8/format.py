"""The ecosystem's FP8 checkpoint format (`quant_method: "fp8"`), as transformers and vLLM read it.

config.json carries, e.g. for Qwen's own FP8 releases and DeepSeek-V3:
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                            "weight_block_size": [128, 128], "modules_to_not_convert": [...]}
Per quantized Linear W[out, in] the checkpoint holds, under the Linear's name:
    weight            float8_e4m3fn [out, in]
    weight_scale_inv  float32 (bf16 in some community builds) [ceil(out / b0), ceil(in / b1)]
    W[i, j] = weight[i, j] * weight_scale_inv[i // b0, j // b1]
Without `weight_block_size` the scale is per tensor (transformers' FineGrainedFP8: a scalar
`weight_scale_inv`; vLLM's fp8 method names it `weight_scale`). Activations are quantized at run time
("dynamic"); a "static" scheme would need `activation_scale` / `input_scale` tensors we do not read.

transformers (5.24, `FineGrainedFP8Config`) names the skip list `modules_to_not_convert` and accepts
`ignored_layers` (vLLM's name) as an alias; module names match from the start at a module boundary, as
a regex, or as a suffix. `scale_fmt: "ue8m0"` (power-of-two byte scales, DeepSeek-V4) is not read here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)       # 448.0
FORMATS = ("e4m3",)
ACTIVATION_SCHEMES = ("dynamic",)
SCALE_FORMATS = ("float",)
# Keys we know; others (writers add their own bookkeeping) are logged and ignored.
_KNOWN = {"quant_method", "fmt", "activation_scheme", "weight_block_size", "modules_to_not_convert",
          "ignored_layers", "scale_fmt", "dequantize", "modules_to_convert", "expert_dtype"}


@dataclass(frozen=True)
class FP8Config:
    """The parts of an FP8 `quantization_config` that decide how tensors are read and computed.

    weight_block_size: (rows, cols) of one weight-scale block, or None for one scale per tensor.
    modules_to_not_convert: checkpoint module names (or patterns) stored unquantized.
    """

    weight_block_size: tuple[int, int] | None = (128, 128)
    activation_scheme: str = "dynamic"
    fmt: str = "e4m3"
    modules_to_not_convert: tuple[str, ...] = ()

    def to_json(self) -> dict:
        out = {"quant_method": "fp8", "fmt": self.fmt, "activation_scheme": self.activation_scheme,
               "weight_block_size": list(self.weight_block_size) if self.weight_block_size else None,
               "modules_to_not_convert": list(self.modules_to_not_convert)}
        if out["weight_block_size"] is None:
            del out["weight_block_size"]
        return out

    @classmethod
    def from_json(cls, quant: dict, where: str = "quantization_config") -> "FP8Config":
        """Parse and validate; every unsupported value raises naming the key, the value and what we read."""
        if not isinstance(quant, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(quant).__name__}")
        method = str(quant.get("quant_method", "")).lower()
        if method != "fp8":
            hint = (" (compressed-tensors FP8 checkpoints are a different format, not read by judge_core)"
                    if method == "compressed-tensors" else "")
            raise ValueError(f"{where}: quant_method={quant.get('quant_method')!r} is not 'fp8'{hint}")
        fmt = str(quant.get("fmt", "e4m3")).lower()
        if fmt not in FORMATS:
            raise ValueError(f"{where}: fmt={quant.get('fmt')!r} is not supported: expected one of {FORMATS}")
        scheme = str(quant.get("activation_scheme", "dynamic")).lower()
        if scheme not in ACTIVATION_SCHEMES:
            raise ValueError(f"{where}: activation_scheme={quant.get('activation_scheme')!r} is not supported: "
                             f"expected one of {ACTIVATION_SCHEMES} (static activation scales are not read)")
        scale_fmt = quant.get("scale_fmt", "float")
        if scale_fmt not in SCALE_FORMATS:
            raise ValueError(f"{where}: scale_fmt={scale_fmt!r} is not supported: expected one of {SCALE_FORMATS}")
        expert_dtype = quant.get("expert_dtype", "fp8")
        if expert_dtype != "fp8":
            raise ValueError(f"{where}: expert_dtype={expert_dtype!r} is not supported: expected 'fp8'")
        if quant.get("modules_to_convert"):
            raise ValueError(f"{where}: modules_to_convert={quant['modules_to_convert']!r} (FP8 embeddings) "
                             "is not supported: expected it empty or absent")
        block = quant.get("weight_block_size")
        if block is not None:
            ok = (isinstance(block, (list, tuple)) and len(block) == 2
                  and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block))
            if not ok:
                raise ValueError(f"{where}: weight_block_size={block!r}: expected two positive ints, e.g. [128, 128], "
                                 "or absent (one scale per tensor)")
            block = (int(block[0]), int(block[1]))
        skip = quant.get("modules_to_not_convert")
        if skip is None:
            skip = quant.get("ignored_layers")
        skip = [] if skip is None else skip
        if not isinstance(skip, (list, tuple)) or not all(isinstance(s, str) for s in skip):
            raise ValueError(f"{where}: modules_to_not_convert={skip!r}: expected a list of module names")
        unknown = sorted(set(quant) - _KNOWN)
        if unknown:
            log.warning("%s: ignoring unknown FP8 quantization_config keys %s", where, unknown)
        return cls(weight_block_size=block, activation_scheme=scheme, fmt=fmt, modules_to_not_convert=tuple(skip))


def is_fp8_config(quant: dict | None) -> bool:
    """True for a `quantization_config` of the ecosystem's "fp8" method (not yet validated)."""
    return isinstance(quant, dict) and str(quant.get("quant_method", "")).lower() == "fp8"
