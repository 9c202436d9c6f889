"""Which dtype and device a judge runs in: one spelling of dtype names and one fp16 refusal for every
backend, command and quantizer.

Never fp16 for Qwen3.5: some of its weights hold values of 1e19..1e36 that overflow fp16 (DESIGN §4).
"""

from __future__ import annotations

from typing import Any

import torch

DTYPE_NAMES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}
REFUSED = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16}
SUPPORTED = (torch.bfloat16, torch.float32)


def check_dtype(dtype: torch.dtype) -> torch.dtype:
    """`dtype` if the judge can run in it, else a ValueError saying why and what to use."""
    if dtype == torch.float16:
        raise ValueError("dtype float16 is not supported: some Qwen3.5 weights overflow fp16; "
                         "use bf16 (GPU default) or fp32 (CPU default)")
    if dtype not in SUPPORTED:
        raise ValueError(f"dtype {dtype} is not supported: expected one of bf16, fp32")
    return dtype


def parse_dtype(dtype: Any) -> torch.dtype | None:
    """None, a torch.dtype or a name (bf16, bfloat16, fp32, float32, torch.float32) -> torch.dtype or None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower().removeprefix("torch.")
    if name in DTYPE_NAMES:
        return DTYPE_NAMES[name]
    if name in REFUSED:
        return REFUSED[name]
    raise ValueError(f"unknown dtype {dtype!r}: expected one of bf16, bfloat16, fp32, float32")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: Any) -> torch.device:
    """None -> cuda when available, else cpu; a CUDA device that does not exist is an error naming it."""
    if device is None:
        return default_device()
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}: expected cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was asked for, but torch.cuda.is_available() is False "
                             f"(torch {torch.__version__}{'' if torch.version.cuda else ', a CPU-only build'})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type != "cpu":
        raise ValueError(f"device {str(device)!r} is not supported: expected cpu, cuda or cuda:N")
    return device


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """The dtype to run in: bf16 on GPU and fp32 on CPU by default; fp16 refused."""
    dtype = parse_dtype(dtype)
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return check_dtype(dtype)
