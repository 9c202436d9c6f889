"""The model's elementwise pieces, one function each: the eager twins of their fused kernels.

At a 32k-token batch of the 4B shape, every unfused elementwise op is a full pass over a
[32k, 2560..9216] tensor (often in float32); a decoder layer has ~15 of them. The KernelSet
(judge_core/ops/kernels.py) picks, once, how they run: `eager` (these functions; the CPU path),
`compiled` (each one `torch.compile(dynamic=True)`'d into one kernel, eager again if compiling fails
on this machine, warned once), or `triton` (our Triton kernels for SwiGLU and the gated RMSNorm,
judge_core/ops/elementwise_triton.py, compiled ones for the rest).

Numerics follow transformers' Qwen3.5 (modeling_qwen3_5.py, 5.24) rounding for rounding: norms in
float32 and cast back; the gated RMSNorm casts the normed value to the model dtype before the weight;
rotary multiplies in the model dtype with cos/sin cast to it; residual sums in the model dtype. In
float32 every cast is a no-op, so the fp32 path is unchanged by these roundings.
"""

from __future__ import annotations

import functools
import logging
from types import SimpleNamespace

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3.5's 1-centred RMSNorm over the last dim: x / rms(x) * (1 + w), (x * w) cast once."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * (1.0 + weight.float())).to(x.dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rms_norm(x + residual), x + residual): the residual add fused into the next norm."""
    total = x + residual
    tf = total.float()
    tf = tf * torch.rsqrt(tf.pow(2).mean(-1, keepdim=True) + eps)
    return (tf * (1.0 + weight.float())).to(x.dtype), total


def gated_rms_norm(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Gated DeltaNet's output norm: x / rms(x) * w * silu(gate), NOT 1-centred, flattened for out_proj.

    x, gate: [T, H, D] (gate may be row-strided); returns [T, H * D]. As transformers'
    Qwen3_5RMSNormGated: the normed value is cast to the model dtype, multiplied by w in that dtype,
    then by silu(gate) in float32, and cast once more.
    """
    xf = x.float()
    normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    out = (weight.to(x.dtype) * normed) * F.silu(gate.float())
    return out.to(x.dtype).reshape(x.shape[0], -1)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def sigmoid_gate(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Attention's output gate: x * sigmoid(gate), both [T, H, D]."""
    return x * torch.sigmoid(gate)


def norm_rotary(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                eps: float) -> torch.Tensor:
    """Per-head q/k RMSNorm (1-centred) then rotary on the first cos.shape[-1] features.

    x: [T, H, D]; cos, sin: [T, R] float32 (halves repeated, as transformers' rotate_half rope). As
    transformers: the norm's output is rounded to the model dtype, and the rotary runs in that dtype
    with cos/sin cast to it.
    """
    xf = x.float()
    xn = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + weight.float())).to(x.dtype)
    cos, sin = cos.to(x.dtype)[:, None, :], sin.to(x.dtype)[:, None, :]
    rot_dim = cos.shape[-1]
    half = rot_dim // 2
    rot, rest = xn[..., :rot_dim], xn[..., rot_dim:]
    rotated = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
    return torch.cat([rot * cos + rotated * sin, rest], dim=-1)


def delta_gates(a: torch.Tensor, b: torch.Tensor, a_log: torch.Tensor,
                dt_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated DeltaNet's per-head gates from [T, Hv] projections: g = -exp(A_log) * softplus(a + dt_bias)
    (log decay, float32) and beta = sigmoid(b) (model dtype)."""
    g = -a_log.float().exp() * F.softplus(a.float() + dt_bias.float())
    return g, b.sigmoid()


ELEMENTWISE = (rms_norm, add_rms_norm, gated_rms_norm, silu_mul, sigmoid_gate, norm_rotary, delta_gates)


def _compile_options() -> dict | None:
    """Keep every bf16 rounding of the eager function (these ops round where transformers rounds). By
    default Inductor drops a downcast-upcast pair between fused ops: measured on the CPU in bf16 at the
    4B head shapes, 24% of sigmoid_gate's and 7% of norm_rotary's outputs then differed from eager (up
    to 0.031); with `emulate_precision_casts`, none. Per compiled function, so user code is untouched."""
    import torch._inductor.config as inductor_config

    return {"emulate_precision_casts": True} if hasattr(inductor_config, "emulate_precision_casts") else None


_COMPILE_OPTIONS = _compile_options()


class compiled_or_eager:
    """`torch.compile(fn, dynamic=True)`, falling back to eager (warned once) if compiling fails."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.compiled = None
        self.failed = False

    def __call__(self, *args):
        if self.failed:
            return self.fn(*args)
        try:
            if self.compiled is None:
                self.compiled = torch.compile(self.fn, dynamic=True, fullgraph=True, options=_COMPILE_OPTIONS)
            return self.compiled(*args)
        except torch.OutOfMemoryError:
            raise  # the runner splits the batch
        except Exception as e:  # no working compiler here: eager is correct, only slower
            log.warning("torch.compile of %s failed (%s: %s); running it eagerly", self.__name__, type(e).__name__, e)
            self.failed = True
            return self.fn(*args)


@functools.cache
def elementwise_table(mode: str) -> SimpleNamespace:
    """The elementwise functions for a KernelSet's `elementwise` choice (one table per mode per process,
    so each function compiles once)."""
    if mode == "eager":
        return SimpleNamespace(**{fn.__name__: fn for fn in ELEMENTWISE})
    if mode == "compiled":
        return SimpleNamespace(**{fn.__name__: compiled_or_eager(fn) for fn in ELEMENTWISE})
    if mode == "triton":
        from . import elementwise_triton

        table = dict(vars(elementwise_table("compiled")))
        table.update(silu_mul=elementwise_triton.silu_mul, gated_rms_norm=elementwise_triton.gated_rms_norm)
        return SimpleNamespace(**table)
    raise ValueError(f"unknown elementwise implementation {mode!r}: expected triton, compiled or eager")
