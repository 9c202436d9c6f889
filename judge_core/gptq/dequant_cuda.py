"""The CUDA twin of the Triton dequant kernel (csrc/gptq_dequant.cu), built at first use.

Chosen with JUDGE_CORE_GPTQ_KERNEL=cuda; it needs nvcc on the machine (torch compiles it once into
~/.cache/torch_extensions). Same contract and bit-exact result as `dequant.dequantize_reference`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parents[2] / "csrc"


@functools.cache
def _cuda_extension():
    from torch.utils.cpp_extension import load

    return load(name="judge_core_gptq_dequant",
                sources=[str(CSRC / "gptq_dequant_binding.cpp"), str(CSRC / "gptq_dequant.cu")],
                extra_cuda_cflags=["-O3"], verbose=False)


def dequantize_cuda(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor, *,
                    zero_offset: int, dtype: torch.dtype) -> torch.Tensor:
    """W^T [in, out] in `dtype`; qweight int32 [in/8, out], qzeros int32 [groups, out/8], scales fp16
    [groups, out], g_idx int32 [in], all on one CUDA device; zero_offset 1 ("gptq") or 0 ("gptq_v2")."""
    if not qweight.is_cuda:
        raise ValueError(f"dequantize_cuda needs CUDA tensors, got qweight on {qweight.device}")
    return _cuda_extension().gptq_dequant(qweight, qzeros, scales, g_idx.to(torch.int32), zero_offset, dtype)
