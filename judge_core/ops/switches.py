"""Every kernel switch the environment can set, read here and nowhere else.

    JUDGE_CORE_GATED_DELTA   fla | blocked | torch                    (ops/kernels.py: KernelSet.gated_delta)
    JUDGE_CORE_ATTENTION     flash_attn | varlen | sdpa | masked | naive  (KernelSet.attention)
    JUDGE_CORE_CONV          triton | cuda | torch                    (KernelSet.conv)
    JUDGE_CORE_ELEMENTWISE   triton | compiled | eager                (KernelSet.elementwise)
    JUDGE_CORE_COMPILE       legacy: 0 = eager elementwise; all = compiled elementwise on the CPU too
    JUDGE_CORE_MATMUL        native | fp32                            (KernelSet.matmul; models/linear.py)
    JUDGE_CORE_GPTQ_KERNEL   triton | cuda | torch                    (KernelSet.gptq_dequant; gptq/dequant.py)

A bad value raises, naming the variable and the choices. The implementations' tables live with the ops
(ATTENTION_IMPLS in ops/attention.py, ...); the choice among them is made once, in ops/kernels.py.
"""

from __future__ import annotations

import os
from typing import Mapping

KERNEL_SWITCHES = ("JUDGE_CORE_GATED_DELTA", "JUDGE_CORE_ATTENTION", "JUDGE_CORE_CONV", "JUDGE_CORE_ELEMENTWISE",
                   "JUDGE_CORE_COMPILE", "JUDGE_CORE_MATMUL", "JUDGE_CORE_GPTQ_KERNEL")


def read_switch(name: str, choices: tuple[str, ...] | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The switch's value (None when unset or empty), checked against `choices` when given."""
    if name not in KERNEL_SWITCHES:
        raise KeyError(f"{name} is not a judge_core kernel switch: expected one of {KERNEL_SWITCHES}")
    value = (os.environ if env is None else env).get(name)
    if not value:
        return None
    if choices is not None and value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {choices}")
    return value
