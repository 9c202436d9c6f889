"""flash-linear-attention installed on a CPU machine: transformers' Qwen3.5 must still run its torch code.

transformers binds fla's Triton kernels by import alone (DESIGN §3); judge_core.hf_kernels routes CPU (and fp32)
calls back to transformers' torch functions. The first two tests run everywhere (a stand-in module, and
the hf backend's log); the last needs fla importable and is what CI's fla step runs.
"""

from __future__ import annotations

import functools
import logging
import sys
import types

import pytest
import torch

from judge_core.hf_kernels import use_exact_torch_kernels
from pair_samples import random_pairs
from parity import TOLERANCES

TOL_PP = TOLERANCES["fp32"]  # |delta| in percentage points


def _fla_importable() -> bool:
    try:
        import fla  # noqa: F401
    except Exception:
        return False
    return True


def _stand_in_modeling_module(monkeypatch, calls):
    """A module shaped like transformers' modeling_qwen3_5: a kernel wrapper around its own torch function."""
    name = "transformers.models.stand_in.modeling_stand_in"
    module = types.ModuleType(name)

    def torch_chunk_gated_delta_rule(query, key, value, g=None, beta=None, **kwargs):
        calls.append("torch")
        return query + 1

    torch_chunk_gated_delta_rule.__module__ = name

    @functools.wraps(torch_chunk_gated_delta_rule)
    def kernel(*args, **kwargs):  # what transformers binds when fla imports: Triton, whatever the device
        calls.append("kernel")
        return args[0] - 1

    module.torch_chunk_gated_delta_rule = kernel
    layer = type("StandInGatedDeltaNet", (torch.nn.Module,), {"__module__": name})
    monkeypatch.setitem(sys.modules, name, module)
    return module, layer()


def test_cpu_and_fp32_calls_take_the_torch_function_half_on_a_gpu_keeps_the_kernel(monkeypatch):
    calls: list[str] = []
    module, layer = _stand_in_modeling_module(monkeypatch, calls)
    assert use_exact_torch_kernels(layer) is layer
    guarded = module.torch_chunk_gated_delta_rule
    use_exact_torch_kernels(layer)                      # idempotent: no second layer of routing
    assert module.torch_chunk_gated_delta_rule is guarded

    x = torch.zeros(2)
    assert torch.equal(guarded(x, x, x, g=x, beta=x, cu_seqlens=None), x + 1)
    assert calls == ["torch"]
    # "meta" stands in for a GPU: bf16 keeps transformers' kernel choice, fp32 (the exact mode: no TF32
    # inside fla's tl.dot) takes the torch function there too.
    half = torch.empty(2, device="meta", dtype=torch.bfloat16)
    guarded(half, half, half)
    assert calls == ["torch", "kernel"]
    full = torch.empty(2, device="meta", dtype=torch.float32)
    guarded(full, full, full)
    assert calls == ["torch", "kernel", "torch"]
    with pytest.raises(ValueError, match=r"got cu_seqlens on cpu \(torch.float32\)"):
        guarded(x, x, x, cu_seqlens=torch.tensor([0, 1, 2]))


def test_installed_transformers_torch_functions_are_reached():
    """Every kernel name of the installed transformers' Qwen3.5 is guarded with its own torch function.

    transformers 5.25 added a `kernels` hub-layer module around each name; a wrapping the guard cannot see
    through would leave only the quiet fallback (and fp32 on a GPU on fla's TF32 kernels): fail loudly here.
    """
    from transformers.models.qwen3_5 import modeling_qwen3_5 as modeling

    from judge_core.hf_kernels import KERNEL_NAMES, _guard_module

    _guard_module(modeling)
    present = [n for n in KERNEL_NAMES if callable(getattr(modeling, n, None))]
    print("guarded:", {n: getattr(getattr(modeling, n), "torch_function", None) for n in present})
    assert "torch_chunk_gated_delta_rule" in present and "causal_conv1d_fn" in present
    for name in present:
        torch_fn = getattr(modeling, name).torch_function
        assert torch_fn is not None and torch_fn.__module__ == modeling.__name__, name
        assert not hasattr(torch_fn, "__wrapped__"), name


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_hub_layer_wrapping_is_peeled_and_an_opaque_one_keeps_quiet(monkeypatch):
    """The `kernels` package's shape (an nn.Module whose forward closes over `func`) and an opaque wrapper."""
    from judge_core.hf_kernels import HINT_LOGGER

    calls: list[str] = []
    module, layer = _stand_in_modeling_module(monkeypatch, calls)
    wrapper = module.torch_chunk_gated_delta_rule

    def hub_layer(func):
        class Func(torch.nn.Module):
            def forward(self, *args, **kwargs):
                return func(*args, **kwargs)
        return Func()

    module.torch_chunk_gated_delta_rule = hub_layer(wrapper)
    use_exact_torch_kernels(layer)
    x = torch.zeros(2)
    assert torch.equal(module.torch_chunk_gated_delta_rule(x, x, x), x + 1) and calls == ["torch"]

    # Opaque: no way to the torch function. The call goes through transformers' wrapper with its hint logger
    # held at ERROR (silenced by its source, not by its wording), and at WARNING again afterwards.
    def opaque(*args, **kwargs):
        logging.getLogger(HINT_LOGGER).warning("any wording at all")
        calls.append("opaque")
        return args[0] * 0 + 7

    module.torch_chunk_gated_delta_rule = opaque
    opaque.__module__ = "elsewhere"
    use_exact_torch_kernels(layer)
    assert module.torch_chunk_gated_delta_rule.torch_function is None
    # transformers' loggers do not propagate to the root logger (pytest's caplog): listen on the logger itself.
    hints, records = logging.getLogger(HINT_LOGGER), _Records()
    hints.addHandler(records)
    try:
        assert torch.equal(module.torch_chunk_gated_delta_rule(x, x, x), x + 7)
        assert calls == ["torch", "opaque"] and records.messages == []
        hints.warning("outside a guarded call")
    finally:
        hints.removeHandler(records)
    assert records.messages == ["outside a guarded call"]


def test_hf_backend_on_cpu_logs_no_kernel_install_hint(tiny_text_ckpt, monkeypatch):
    """Without fla, transformers' fallback logs "install flash-linear-attention": wrong advice on CPU."""
    from judge_core import Judge

    said: list[str] = []
    # transformers' warning_once is cached per process: record every call instead of reading the log.
    monkeypatch.setattr(logging.Logger, "warning_once", lambda self, msg, *a, **k: said.append(str(msg)),
                        raising=False)
    judge = Judge.from_pretrained(tiny_text_ckpt, backend="hf")
    scores = judge.compare_many(random_pairs(2, seed=3))
    assert all(s.ok for s in scores)
    hints = [m for m in said if "flash-linear-attention" in m or "causal-conv1d" in m or "causal_conv1d" in m]
    assert hints == []


def _fla_function_in(wrapper) -> str | None:
    """The fla function transformers' wrapper closes over, if it picked one."""
    seen, todo = set(), [wrapper]
    while todo:
        fn = todo.pop()
        if id(fn) in seen or not callable(fn):
            continue
        seen.add(id(fn))
        if (getattr(fn, "__module__", "") or "").startswith("fla."):
            return f"{fn.__module__}.{fn.__name__}"
        todo.extend(c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if _filled(c))
        todo.append(getattr(fn, "__wrapped__", None))
        if isinstance(fn, torch.nn.Module):  # transformers 5.25: a `kernels` hub layer closing over the wrapper
            todo.append(type(fn).forward)
    return None


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not _fla_importable(), reason="flash-linear-attention is not installed: CI's fla step "
                    "(.ci/run) installs it in a separate directory and runs this test there")
def test_backends_with_fla_importable_match_the_torch_twin(tiny_text_ckpt):
    """hf backend, reference twin (transformers) and packed backend (our torch code) on CPU with fla importable."""
    from transformers.models.qwen3_5 import modeling_qwen3_5

    from judge_core import Judge
    from judge_core.reference import ReferenceJudge

    hf = Judge.from_pretrained(tiny_text_ckpt, backend="hf")
    # The case this file is about: transformers picked fla's Triton kernel for the CPU model.
    picked = _fla_function_in(modeling_qwen3_5.torch_chunk_gated_delta_rule)
    print(f"\ntransformers picked {picked} for torch_chunk_gated_delta_rule")
    assert picked is not None and "chunk_gated_delta_rule" in picked

    pairs = random_pairs(4, seed=5)
    packed = Judge.from_pretrained(tiny_text_ckpt, backend="packed").compare_many(pairs)
    got_hf = hf.compare_many(pairs)
    got_ref = ReferenceJudge.from_pretrained(tiny_text_ckpt).compare_many(pairs)
    for name, got in (("hf backend", got_hf), ("reference twin", got_ref)):
        assert all(s.ok for s in got)
        d_p1 = max(abs(a.p1 - b.p1) for a, b in zip(got, packed))
        d_pass = max(max(abs(a.pass1[0] - b.pass1[0]), abs(a.pass2[0] - b.pass2[0])) for a, b in zip(got, packed))
        print(f"{name} vs packed torch twin, fla importable: max |delta p1| = {d_p1:.2e} pp, "
              f"max |delta pass P(A)| = {d_pass:.2e} pp")
        assert d_p1 <= TOL_PP and d_pass <= TOL_PP
    assert max(abs(s.pass1[0] - 50) for s in packed) > 1.0  # a judge with opinions, or equality proves little
