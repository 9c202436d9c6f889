"""Where the fp8 fast path (row-wise `torch._scaled_mm`) can be tested: the CPU when torch's CPU build has
it (2.13 does), and a CUDA GPU of sm_89 or newer."""

from __future__ import annotations

import pytest
import torch


def scaled_mm_devices() -> list:
    """The devices whose torch runs row-wise fp8 _scaled_mm (the CPU in torch 2.13; CUDA sm_89+), each a
    pytest param, skipped where the probe says no (with its reason)."""
    from judge_core.fp8.linear import scaled_mm_problem

    out = []
    for name in ("cpu", "cuda"):
        if name == "cuda" and not torch.cuda.is_available():
            out.append(pytest.param(name, marks=pytest.mark.skip(reason="no CUDA GPU")))
            continue
        problem = scaled_mm_problem(torch.device(name))
        out.append(pytest.param(name, marks=pytest.mark.skip(reason=problem)) if problem else name)
    return out
