"""W8A8 dynamic FP8 Linears: fp8 e4m3 weights with one scale per output channel, activations rounded
to fp8 with one scale per row (token) at run time, output rounded to bf16.

Two ways to compute the same thing, chosen once per module and device (`resolve_compute`):
- "scaled_mm" (CUDA sm_89+; also the CPU where torch's CPU build has row-wise `_scaled_mm`, as 2.13
  does): `torch._scaled_mm(x_fp8 [M, K] row-major, W_fp8.t() [K, N] column-major, scale_a [M, 1] fp32,
  scale_b [1, N] fp32, out_dtype=bf16)` -- row-wise scaling, K and N multiples of 16 (the same call in
  torch 2.11 and 2.13; row-wise scales need a bf16 output and CUDA >= 12.9 builds). On the CPU it is
  only ever chosen explicitly: it lets CI run the very call the GPU makes against the twin.
- "twin" (any device; CI): the same fp8 operands (quantize.quantize_activation, the stored fp8 weight)
  widened to float32, an fp32 matmul, the two scales applied, then the same bf16 rounding. It differs
  from the GPU path only in the GEMM's accumulation order.
The module's output is then cast to `out_dtype` (the model's dtype).

Block-scaled checkpoint weights (`weight_block_size`, 128 x 128) are not computed blockwise here:
torch has a (1x128 activations, 128x128 weights) `_scaled_mm` on sm_90 with CUDA 12.9+, unverified on
our GPU builds, so `FP8Linear.from_fp8` re-rounds such a weight per output channel (documented fallback,
one extra fp8 rounding, logged once).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .format import FP8_DTYPE
from .quantize import dequantize_fp8_tensor, quantize_activation, quantize_weight

log = logging.getLogger(__name__)

COMPUTE = ("auto", "twin", "scaled_mm")
GEMM_OUT_DTYPE = torch.bfloat16          # what the fp8 GEMM rounds to (row-wise _scaled_mm: bf16 only)
_PROBED: dict[str, str | None] = {}      # device -> None when row-wise _scaled_mm works there, else why not
_WARNED = set()


def _warn_once(key: str, message: str, *args) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message, *args)


def scaled_mm_problem(device: torch.device) -> str | None:
    """None when row-wise fp8 `_scaled_mm` runs on `device`, else why not (probed once per device)."""
    key = str(device)
    if key in _PROBED:
        return _PROBED[key]
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        major, minor = torch.cuda.get_device_capability(device)
        _PROBED[key] = f"compute capability {major}.{minor} has no FP8 GEMMs (sm_89 or newer needed)"
    elif device.type not in ("cuda", "cpu"):
        _PROBED[key] = f"device {device} is neither CUDA nor the CPU"
    elif not hasattr(torch, "_scaled_mm"):
        _PROBED[key] = f"torch {torch.__version__} has no torch._scaled_mm"
    else:
        # A 16 x 16 x 16 GEMM with the call's own layout: a CUDA build may lack row-wise scaling
        # (CUDA < 12.9), a CPU build may lack _scaled_mm for fp8 altogether.
        try:
            a = torch.ones(16, 16, device=device).to(FP8_DTYPE)
            one = torch.ones(16, 1, device=device)
            torch._scaled_mm(a, a.t(), scale_a=one, scale_b=one.t().contiguous(), out_dtype=GEMM_OUT_DTYPE)
            _PROBED[key] = None
        except (RuntimeError, NotImplementedError, ValueError) as e:
            _PROBED[key] = f"torch {torch.__version__}: _scaled_mm with row-wise scales failed on {device}: {e}"
    return _PROBED[key]


def resolve_compute(requested: str, device: torch.device) -> str:
    """"auto" -> "scaled_mm" on a CUDA device that runs it, "twin" on the CPU (the exact reference there,
    and the CPU's _scaled_mm is no faster); an explicit choice is checked.

    A CUDA device without FP8 GEMMs is an error (the twin there would be slower than bf16: load the
    model without fp8 instead)."""
    if requested not in COMPUTE:
        raise ValueError(f"fp8_compute={requested!r}: expected one of {COMPUTE}")
    if requested == "twin":
        return "twin"
    if requested == "auto" and device.type != "cuda":
        return "twin"
    problem = scaled_mm_problem(device)
    if problem is not None:
        raise ValueError(f"fp8_compute={requested!r} on {device}: {problem}. Load the model in bf16 instead, "
                         "or pass fp8_compute='twin' (the exact reference, slow)")
    return "scaled_mm"


class FP8Linear(nn.Module):
    """y = x @ W^T with W = weight (fp8 e4m3 [out, in]) * weight_scale (float32 [out]), W8A8 dynamic.

    forward: x [..., in] (any float dtype) -> [..., out] in `out_dtype`.
    """

    def __init__(self, in_features: int, out_features: int, *, out_dtype: torch.dtype = torch.bfloat16,
                 compute: str = "auto", device=None):
        super().__init__()
        if compute not in COMPUTE:
            raise ValueError(f"fp8_compute={compute!r}: expected one of {COMPUTE}")
        self.in_features, self.out_features = in_features, out_features
        self.out_dtype, self.compute = out_dtype, compute
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=FP8_DTYPE, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self._resolved: tuple[torch.device, str] | None = None

    @classmethod
    def from_float(cls, weight: torch.Tensor, *, out_dtype: torch.dtype | None = None,
                   compute: str = "auto") -> "FP8Linear":
        """Quantize a float weight [out, in] per output channel (raises on non-finite weights)."""
        q, scale = quantize_weight(weight)
        return cls._from_parts(q, scale, out_dtype or weight.dtype, compute)

    @classmethod
    def from_fp8(cls, weight: torch.Tensor, scale: torch.Tensor, block: tuple[int, int] | None = None, *,
                 out_dtype: torch.dtype = torch.bfloat16, compute: str = "auto") -> "FP8Linear":
        """From checkpoint tensors: fp8 `weight` [out, in] and its scale (`weight_scale_inv` / `weight_scale`).

        A per-tensor or per-channel scale is used as is; a block-scaled weight is dequantized and
        re-rounded per output channel (see the module doc)."""
        if weight.dtype != FP8_DTYPE:
            raise ValueError(f"FP8Linear.from_fp8: weight dtype {weight.dtype}, expected {FP8_DTYPE}")
        if block is not None:
            _warn_once("block", "fp8: block-scaled weights (block %s) are re-rounded per output channel for the "
                       "row-wise scaled GEMM (one extra fp8 rounding; blockwise GEMM not wired)", tuple(block))
            return cls.from_float(dequantize_fp8_tensor(weight, scale, block), out_dtype=out_dtype, compute=compute)
        out_f = weight.shape[0]
        s = scale.float().reshape(-1)
        if s.numel() == 1:
            s = s.expand(out_f)
        if s.numel() != out_f:
            raise ValueError(f"FP8Linear.from_fp8: scale shape {tuple(scale.shape)} for weight "
                             f"{tuple(weight.shape)}: expected a scalar, [out] or [out, 1]")
        return cls._from_parts(weight, s.contiguous(), out_dtype, compute)

    @classmethod
    def _from_parts(cls, q: torch.Tensor, scale: torch.Tensor, out_dtype, compute) -> "FP8Linear":
        self = cls(q.shape[1], q.shape[0], out_dtype=out_dtype, compute=compute, device="meta")
        self.weight, self.weight_scale = q.contiguous(), scale.float().contiguous()
        return self

    def dequantized_weight(self) -> torch.Tensor:
        """W = weight * weight_scale, float32 [out, in] (for references and tests)."""
        return self.weight.float() * self.weight_scale[:, None]

    def _apply(self, fn, recurse=True):
        # model.to(dtype) moves these buffers but must not cast them: fp8 weights and fp32 scales ARE the format.
        for name, buf in self._buffers.items():
            if buf is not None:
                moved = fn(buf)
                self._buffers[name] = moved if moved.dtype == buf.dtype else buf.to(moved.device)
        self._resolved = None
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self._resolved is None or self._resolved[0] != x2.device:   # once per device, not per call
            self._resolved = (x2.device, resolve_compute(self.compute, x2.device))
        if x2.shape[0] == 0:
            return x.new_empty(*lead, self.out_features, dtype=self.out_dtype)
        xq, x_scale = quantize_activation(x2)
        if self._resolved[1] == "scaled_mm":
            y = torch._scaled_mm(xq, self.weight.t(), scale_a=x_scale, scale_b=self.weight_scale.view(1, -1),
                                 out_dtype=GEMM_OUT_DTYPE)
        else:
            y = ((xq.float() @ self.weight.float().t()) * x_scale * self.weight_scale).to(GEMM_OUT_DTYPE)
        return y.to(self.out_dtype).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, out_dtype={self.out_dtype}, "
                f"compute={self.compute}")


class FP8FusedLinear(nn.Module):
    """The FP8 form of `models.linear.FusedLinear`: the quantizable parts in one FP8 GEMM, the parts that
    stay in float (e.g. GDN's 32-wide in_proj_b / in_proj_a) in one small float GEMM; forward returns
    every part's output in `part_names` order, like FusedLinear.

    fp8: FP8Linear over cat(quantizable parts) or None; weight: float [sum(float sizes), in] or None.
    """

    def __init__(self, in_features: int, out_sizes: list[int], part_names: list[str], quantized: list[bool],
                 fp8: FP8Linear | None, float_weight: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_sizes, self.part_names = in_features, list(out_sizes), list(part_names)
        self.quantized = list(quantized)
        self.fp8_sizes = [s for s, q in zip(out_sizes, quantized) if q]
        self.float_sizes = [s for s, q in zip(out_sizes, quantized) if not q]
        if (fp8 is None) != (not self.fp8_sizes) or (fp8 is not None and fp8.out_features != sum(self.fp8_sizes)):
            raise ValueError(f"FP8FusedLinear {part_names}: the FP8 GEMM does not hold the quantized parts "
                             f"{self.fp8_sizes}")
        if (float_weight is None) != (not self.float_sizes) or (
                float_weight is not None and tuple(float_weight.shape) != (sum(self.float_sizes), in_features)):
            raise ValueError(f"FP8FusedLinear {part_names}: float weight does not hold the float parts "
                             f"{self.float_sizes} x {in_features}")
        self.fp8 = fp8
        self.weight = None if float_weight is None else nn.Parameter(float_weight, requires_grad=False)

    @classmethod
    def from_fused(cls, fused, quantized: list[bool], *, compute: str = "auto") -> "FP8FusedLinear":
        """From a `FusedLinear` (its weight in the model dtype): parts flagged in `quantized` go to FP8."""
        pieces = fused.weight.detach().split(fused.out_sizes, dim=0)
        q_pieces = [p for p, q in zip(pieces, quantized) if q]
        f_pieces = [p for p, q in zip(pieces, quantized) if not q]
        fp8 = FP8Linear.from_float(torch.cat(q_pieces), compute=compute) if q_pieces else None
        float_weight = torch.cat(f_pieces).contiguous() if f_pieces else None
        return cls(fused.in_features, fused.out_sizes, fused.part_names, quantized, fp8, float_weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x [T, in] -> one [T, out_i] tensor per part, in part order."""
        q_out = iter(self.fp8(x).split(self.fp8_sizes, dim=-1) if self.fp8 is not None else ())
        f_out = iter(torch.nn.functional.linear(x, self.weight).split(self.float_sizes, dim=-1)
                     if self.weight is not None else ())
        return tuple(next(q_out) if q else next(f_out) for q in self.quantized)

    def extra_repr(self) -> str:
        parts = {n: f"{s}{'' if q else ' float'}" for n, s, q in zip(self.part_names, self.out_sizes, self.quantized)}
        return f"in_features={self.in_features}, parts={parts}"
