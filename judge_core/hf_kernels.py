"""transformers' torch paths for Qwen3.5's Gated DeltaNet on the CPU and in fp32, whatever kernels are installed.

transformers (checked on 5.17 and 5.24) binds the Gated DeltaNet and causal-conv names of
`modeling_qwen3_5` at import, by import alone and without checking the device (DESIGN §3):
`torch_chunk_gated_delta_rule` and `torch_recurrent_gated_delta_rule` become flash-linear-attention's
Triton kernels when `fla` imports, `causal_conv1d_fn` / `causal_conv1d_update` become causal-conv1d's CUDA
kernels when `causal_conv1d` imports. On a CPU machine with fla installed every forward then dies in
Triton ("0 active drivers"); without it, each call logs "install flash-linear-attention for the optimized
kernel", which is wrong advice on CPU. The layers call these names as module globals, and each is
transformers' wrapper around its own torch function (reachable through `__wrapped__`).

`use_exact_torch_kernels(model)` puts a check in front of each such name in the modeling modules the
model's layers come from: CPU tensors, and float32 tensors on any device, go straight to transformers'
torch function (no Triton, no hint); half-precision tensors on a GPU keep what transformers chose. fp32
because fp32 is this project's exact mode (ops/kernels.py): fla's Triton kernels run `tl.dot` on fp32
inputs in TF32 (a 10-bit mantissa), which would make the hf fp32 reference twin on a GPU as far off as
the 0.056 pp TF32 cost packed at the 4B shape. The check is per call, so a model moved to a GPU later,
or a bf16 GPU model in the same process, still gets the kernels. Weights are not touched.

transformers 5.25 wraps each such name once more, in a `kernels` hub-layer module (`Func`, an nn.Module whose
forward closes over transformers' wrapper): `_torch_function` peels that layer too. Should a later release
wrap them in a way we cannot see through, the CPU call still goes through transformers' own wrapper (which
routes CPU tensors to its torch code since 5.25) with the logger that gives the advice,
`transformers.integrations.hub_kernels`, held at ERROR for the call: the advice is silenced by where it
comes from, never by its wording.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys

import torch

# The names transformers' Qwen3.5 layers call and may bind to a kernel package at import.
KERNEL_NAMES = ("torch_chunk_gated_delta_rule", "torch_recurrent_gated_delta_rule", "causal_conv1d_fn",
                "causal_conv1d_update")
_MARK = "_judge_core_exact_torch_path"
# The logger transformers' kernel wrappers advise through ("... install flash-linear-attention").
HINT_LOGGER = "transformers.integrations.hub_kernels"


def use_exact_torch_kernels(model: torch.nn.Module) -> torch.nn.Module:
    """Route the model's Gated DeltaNet / causal-conv calls on CPU or fp32 tensors to transformers' torch code.

    Idempotent and cheap; returns `model` so it can wrap a constructor call.
    """
    module_names = {type(m).__module__ for m in model.modules()}
    for name in sorted(module_names):
        if name.startswith("transformers.models.") and name in sys.modules:
            _guard_module(sys.modules[name])
    return model


def _guard_module(module) -> None:
    for name in KERNEL_NAMES:
        chosen = getattr(module, name, None)
        if not callable(chosen) or getattr(chosen, _MARK, False):
            continue
        setattr(module, name, _exact_to_torch(name, chosen, _torch_function(chosen, module.__name__)))


def _torch_function(chosen, module_name: str):
    """transformers' own torch function behind `chosen`, or None when it cannot be reached.

    Peels functools wrappers (`__wrapped__`) and the `kernels` package's hub-layer module (an nn.Module whose
    forward closes over the function it wraps, as `func`). Only a function defined in the modeling module
    itself counts: anything else is a kernel, not transformers' torch code.
    """
    fn, seen = chosen, set()
    while fn is not None and id(fn) not in seen:
        seen.add(id(fn))
        if inspect.isfunction(fn) and fn.__module__ == module_name and not hasattr(fn, "__wrapped__"):
            return fn
        if hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        elif isinstance(fn, torch.nn.Module):
            fn = _closed_over(type(fn).forward, "func")
        else:
            return None
    return None


def _closed_over(function, name: str):
    code = getattr(function, "__code__", None)
    if code is None or name not in code.co_freevars:
        return None
    return function.__closure__[code.co_freevars.index(name)].cell_contents


@contextlib.contextmanager
def _quiet_kernel_hints():
    hints = logging.getLogger(HINT_LOGGER)
    level = hints.level
    hints.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hints.setLevel(level)


def _first_tensor(args, kwargs) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def takes_torch_path(tensor: torch.Tensor | None) -> bool:
    """CPU tensors and fp32 tensors anywhere run transformers' torch code; bf16/fp16 on a GPU the kernels."""
    return tensor is not None and (tensor.device.type == "cpu" or tensor.dtype == torch.float32)


def _exact_to_torch(name: str, chosen, torch_fn):
    params = inspect.signature(torch_fn).parameters if torch_fn is not None else {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    @functools.wraps(torch_fn or chosen)
    def call(*args, **kwargs):
        first = _first_tensor(args, kwargs)
        if not takes_torch_path(first):
            return chosen(*args, **kwargs)
        # transformers' torch code ignores these; its wrapper refuses them without the kernel package.
        # Refuse them here too rather than let packed sequences leak into each other.
        packed = [k for k in ("cu_seqlens", "seq_idx") if kwargs.get(k) is not None]
        if packed:
            raise ValueError(f"transformers' `{name}` got {packed[0]} on {first.device} ({first.dtype}): its torch "
                             "code cannot keep packed "
                             "sequences apart; pass one sequence per row (or use judge_core's packed backend)")
        if torch_fn is None:  # a wrapping we cannot see through: transformers' own routing, without its advice
            with _quiet_kernel_hints():
                return chosen(*args, **kwargs)
        if not takes_any:
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        return torch_fn(*args, **kwargs)

    setattr(call, _MARK, True)
    call.torch_function = torch_fn  # None where only the quiet fallback applies (tests read it)
    return call
