"""Quantizing one weight matrix to 4 bits: round-to-nearest and the Hessian-based GPTQ algorithm.

Both return integer codes q [out, in], fp16-representable scales and integer zeros [groups, out], and
g_idx [in]; `pack_layer` turns them into the checkpoint tensors. Scales are rounded to fp16 *before*
the codes are chosen, so the codes are optimal for the scales the checkpoint actually stores.

GPTQ (Frantar et al. 2022): columns are quantized one by one; each column's rounding error is spread
over the not-yet-quantized columns through the Cholesky factor of the inverse Hessian H = 2 X^T X of
the layer's inputs, lazily in blocks of 128 columns. Act-order (desc_act) visits columns by decreasing
H diagonal, and groups are formed in that order, which is what makes g_idx a scrambled assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .format import MAXQ, QuantConfig, default_g_idx, pack_cols, pack_rows, stored_zeros

FP16_MAX = 65504.0
# The smallest scale we store: fp16 subnormals below ~6e-8 flush to 0, which would divide by zero.
MIN_SCALE = 1e-6


class NonFiniteScaleError(ValueError):
    """A group's range does not fit an fp16 scale (or the weights are not finite): keep the layer in float."""


@dataclass
class QuantizedWeight:
    q: torch.Tensor        # int32 [out, in], 0..15
    scales: torch.Tensor   # float32 [groups, out], exactly fp16-representable
    zeros: torch.Tensor    # int32 [groups, out], 0..15 (true zeros)
    g_idx: torch.Tensor    # int32 [in]

    def dequantize(self) -> torch.Tensor:
        """W [out, in] float32, exactly what a reader of the packed tensors computes."""
        g = self.g_idx.long()
        return ((self.q - self.zeros[g].t()).float() * self.scales[g].t())


def split_rows(qw: QuantizedWeight, sizes: list[int]) -> list[QuantizedWeight]:
    """Undo a concatenation along out: GPTQ treats output rows independently given H, so Linears fed the
    same input can be quantized as one matrix (one column loop instead of several) and split after."""
    q = qw.q.split(sizes, dim=0)
    scales, zeros = qw.scales.split(sizes, dim=1), qw.zeros.split(sizes, dim=1)
    return [QuantizedWeight(a, b, c, qw.g_idx.clone()) for a, b, c in zip(q, scales, zeros)]


def group_params(x: torch.Tensor, cfg: QuantConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero per output row of a column group x [out, n] -> (scale fp32 [out], zero int32 [out]).

    The range always includes 0 (as in the GPTQ reference). Symmetric: zero = 8 and the range is
    +-max|x|. v1 checkpoints never get zero = 0 (format.py explains why).
    """
    if not torch.isfinite(x).all():
        raise NonFiniteScaleError(f"weights hold non-finite values (max |w| = {x.abs().max().item():.3g})")
    xmin = x.min(dim=1).values.clamp(max=0)
    xmax = x.max(dim=1).values.clamp(min=0)
    if cfg.sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = -xmax
    empty = (xmin == 0) & (xmax == 0)
    xmin, xmax = torch.where(empty, -1.0, xmin), torch.where(empty, 1.0, xmax)
    scale = (xmax - xmin) / MAXQ
    if scale.max() > FP16_MAX:
        raise NonFiniteScaleError(f"a group scale of {scale.max().item():.3g} overflows fp16 "
                                  f"(max |w| = {x.abs().max().item():.3g})")
    scale = scale.clamp(min=MIN_SCALE).half().float()
    if cfg.sym:
        zero = torch.full_like(scale, (MAXQ + 1) // 2, dtype=torch.int32)
    else:
        low = 1 if cfg.checkpoint_format == "gptq" else 0
        zero = torch.round(-xmin / scale).clamp(low, MAXQ).to(torch.int32)
    return scale, zero


def _quantize_column(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.round(w / scale) + zero, 0, MAXQ).to(torch.int32)


def quantize_rtn(weight: torch.Tensor, cfg: QuantConfig) -> QuantizedWeight:
    """Round-to-nearest: weight [out, in] -> codes with per-group scales."""
    w = weight.detach().float()
    n_out, n_in = w.shape
    gs = n_in if cfg.group_size == -1 else cfg.group_size
    g_idx = default_g_idx(n_in, cfg.group_size, device=w.device)
    scales, zeros, q = [], [], torch.empty(n_out, n_in, dtype=torch.int32, device=w.device)
    for start in range(0, n_in, gs):
        s, z = group_params(w[:, start:start + gs], cfg)
        q[:, start:start + gs] = _quantize_column(w[:, start:start + gs], s[:, None], z[:, None])
        scales.append(s)
        zeros.append(z)
    return QuantizedWeight(q, torch.stack(scales), torch.stack(zeros), g_idx)


def quantize_gptq(weight: torch.Tensor, hessian: torch.Tensor, cfg: QuantConfig, *, damp: float = 0.01,
                  block_size: int = 128) -> QuantizedWeight:
    """GPTQ: weight [out, in] and the input Hessian [in, in] (sum of 2 x x^T / n) -> codes.

    damp: fraction of the mean Hessian diagonal added to it before the Cholesky factorisation.
    """
    w = weight.detach().float().clone()
    h = hessian.detach().float().clone()
    n_out, n_in = w.shape
    dead = torch.diag(h) == 0  # inputs that were always zero: any value works, choose 0
    h[dead, dead] = 1
    w[:, dead] = 0

    perm = torch.argsort(torch.diag(h), descending=True) if cfg.desc_act else None
    if perm is not None:
        w, h = w[:, perm], h[perm][:, perm]
    hinv = _inverse_hessian_factor(h, damp)

    gs = n_in if cfg.group_size == -1 else cfg.group_size
    q = torch.empty(n_out, n_in, dtype=torch.int32, device=w.device)
    scales, zeros = [], []
    for i1 in range(0, n_in, block_size):
        i2 = min(i1 + block_size, n_in)
        errors = torch.empty(n_out, i2 - i1, device=w.device)
        for col in range(i1, i2):
            if col % gs == 0:  # a new group: its range from the columns as updated so far
                s, z = group_params(w[:, col:col + gs], cfg)
                scales.append(s)
                zeros.append(z)
            column = w[:, col]
            q[:, col] = _quantize_column(column, s, z)
            err = (column - s * (q[:, col] - z).float()) / hinv[col, col]
            w[:, col:i2] -= err[:, None] * hinv[col, col:i2][None, :]
            errors[:, col - i1] = err
        w[:, i2:] -= errors @ hinv[i1:i2, i2:]

    g_perm = torch.arange(n_in, device=w.device, dtype=torch.int32) // gs  # group of each visited column
    if perm is not None:
        g_idx = torch.empty_like(g_perm)
        g_idx[perm] = g_perm
        q_orig = torch.empty_like(q)
        q_orig[:, perm] = q
        q = q_orig
    else:
        g_idx = g_perm
    return QuantizedWeight(q, torch.stack(scales), torch.stack(zeros), g_idx)


class HessianError(ValueError):
    """The Hessian is not usable (non-finite inputs, or not positive definite even with more damping)."""


def _inverse_hessian_factor(h: torch.Tensor, damp: float, retries: int = 3) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1: row i says how column i's error moves
    the later columns. Damping grows 10x per retry when H is numerically singular."""
    if not torch.isfinite(h).all():
        raise HessianError("the layer's inputs hold non-finite values")
    eye = torch.eye(h.shape[0], device=h.device, dtype=h.dtype)
    mean_diag = torch.mean(torch.diag(h))
    for attempt in range(retries + 1):
        try:
            lower = torch.linalg.cholesky(h + damp * 10**attempt * mean_diag * eye)
            return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
        except torch.linalg.LinAlgError:
            continue
    raise HessianError(f"H + damping is not positive definite even with damp={damp * 10**retries:g}")


def pack_layer(qw: QuantizedWeight, cfg: QuantConfig) -> dict[str, torch.Tensor]:
    """Codes -> the checkpoint tensors {qweight, qzeros, scales, g_idx} (on the CPU)."""
    return {
        "qweight": pack_rows(qw.q.t().contiguous()).cpu(),
        "qzeros": pack_cols(stored_zeros(qw.zeros, cfg)).cpu(),
        "scales": qw.scales.half().cpu(),
        "g_idx": qw.g_idx.to(torch.int32).cpu().clone(),  # never shared: safetensors refuses aliases
    }
