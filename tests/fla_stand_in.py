"""A stand-in `fla.ops.gated_delta_rule` for tests (fla is never installed in the CPU suite): it hands
each call's arguments to a recorder and answers with our recurrence twin, so the glue into fla is
checked end to end without fla."""

from __future__ import annotations

import sys
import types

from judge_core.ops.gated_delta import gated_delta_naive


def install_fla_stand_in(monkeypatch, record) -> None:
    """record(q, k, v, g, beta, scale, cu_seqlens, use_qk_l2norm_in_kernel) is called on every call."""
    def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, cu_seqlens=None, use_qk_l2norm_in_kernel=False, **kw):
        record(q, k, v, g, beta, scale, cu_seqlens, use_qk_l2norm_in_kernel)
        out = gated_delta_naive(q[0], k[0], v[0], g[0], beta[0], cu_seqlens, scale=scale,
                                use_qk_l2norm=use_qk_l2norm_in_kernel)
        return out[None], None

    module = types.ModuleType("fla.ops.gated_delta_rule")
    module.chunk_gated_delta_rule = chunk_gated_delta_rule
    for name in ("fla", "fla.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "fla.ops.gated_delta_rule", module)
