"""The causal conv of a forked batch: a suffix segment's first rows read its parent chain's last inputs.

Gated DeltaNet's depthwise causal conv (width K) at a suffix's first row needs the K - 1 conv inputs
before it, which are rows of its ancestor segments. Rather than a conv kernel of its own, the batch
layout (models/batch.py) lists an extended input stream: each segment's K - 1 inherited rows, then its
own rows, with their positions in the prompt. Any conv of ops/conv.py runs over that stream unchanged
(its positions mask still resets at each prompt start: a root segment's rows start at position 0), and
the rows that are not the segment's own are dropped after.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv1d_with_context(conv, x: torch.Tensor, weight: torch.Tensor, forks) -> torch.Tensor:
    """conv(x, weight, positions) over the forked stream: x [T, C] (the batch's rows) -> [T, C].

    conv: a positions-based causal conv + SiLU (the KernelSet's `conv1d`); forks: the batch's `Forks`.
    """
    kernel = weight.shape[1]
    if kernel - 1 > forks.conv_context:
        raise ValueError(f"causal conv of width {kernel} needs {kernel - 1} inherited rows per forked segment; "
                         f"the batch layout carries {forks.conv_context}")
    return conv(x[forks.conv_rows], weight, forks.conv_positions)[forks.conv_keep]


def conv1d_with_context_naive(x: torch.Tensor, weight: torch.Tensor, chain_rows: torch.Tensor,
                              chain_bounds: list[int], own_bounds: list[int]) -> torch.Tensor:
    """Reference twin: each segment's whole prompt so far (ancestor rows, then its own: `chain_rows`,
    bounds `chain_bounds`) through one zero-padded F.conv1d from the prompt's start, as transformers
    does; its own rows (bounds `own_bounds` in x) are the last ones. x [T, C]; weight [C, K]."""
    kernel = weight.shape[1]
    out = torch.empty_like(x)
    for cs, ce, os_, oe in zip(chain_bounds[:-1], chain_bounds[1:], own_bounds[:-1], own_bounds[1:]):
        seq = x[chain_rows[cs:ce]].T.float().unsqueeze(0)                          # [1, C, L]
        y = F.conv1d(seq, weight.float().unsqueeze(1), padding=kernel - 1, groups=x.shape[1])
        y = y[0, :, : ce - cs].T.to(x.dtype).float()
        out[os_:oe] = F.silu(y[ce - cs - (oe - os_):]).to(x.dtype)
    return out
