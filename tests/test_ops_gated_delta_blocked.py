"""The CPU's gated delta rule (in-chunk inverse by matmuls, chunks step-major) against its twins:
the token-by-token recurrence, our chunked solve_triangular path and transformers' own torch code."""

from __future__ import annotations

import pytest
import torch

from gated_delta_cases import gated_delta_inputs, transformers_per_prompt
from judge_core.ops.gated_delta import gated_delta_chunked, gated_delta_naive, gated_delta_rule
from judge_core.ops.gated_delta_blocked import StepLayout, gated_delta_blocked, unit_lower_inverse
from judge_core.ops.kernels import select_kernels


_inputs = gated_delta_inputs


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_unit_lower_inverse_matches_solve(size):
    gen = torch.Generator().manual_seed(size)
    a = torch.randn(3, 2, size, size, generator=gen) * 0.2
    a += torch.triu(torch.full_like(a, 7.0))     # the diagonal and above must be ignored
    want = torch.linalg.solve_triangular(torch.eye(size) + a.tril(-1), torch.eye(size).expand_as(a), upper=False)
    got = unit_lower_inverse(a)
    err = ((got - want).abs().max() / want.abs().max()).item()
    print(f"block inverse vs solve_triangular, C={size}: max relative |delta| = {err:.3g}")
    assert err < 1e-5


@pytest.mark.parametrize("chunk", [16, 32, 64, 128])
@pytest.mark.parametrize("lengths", [[1], [5], [63], [64], [65], [129], [1, 63, 64, 65, 130], [130, 1, 1, 7, 64],
                                     [2, 3, 5, 7, 11, 13, 17, 19, 23]])
def test_blocked_matches_recurrence(lengths, chunk):
    q, k, v, g, beta, cu = _inputs(lengths)
    ref = gated_delta_naive(q, k, v, g, beta, cu)
    got = gated_delta_blocked(q, k, v, g, beta, cu, chunk_size=chunk)
    err = (got - ref).abs().max().item()
    print(f"gated delta blocked (C={chunk}) vs naive, lengths {lengths}: max |delta| = {err:.3g}")
    assert err < 1e-4


def test_blocked_with_fast_decay_matches_recurrence():
    """Log decays down to -10 a token: within a chunk cum_i - cum_j falls far below the exp floor
    (EXP_FLOOR), where the blocked path clamps before its exp; the token-by-token recurrence has no floor."""
    from judge_core.ops.gated_delta_blocked import EXP_FLOOR

    q, k, v, g, beta, cu = _inputs([200, 64, 7, 130], decay=10.0)
    lowest = (g[:64].sum(0)).min().item()
    ref = gated_delta_naive(q, k, v, g, beta, cu)
    got = gated_delta_blocked(q, k, v, g, beta, cu)
    err = (got - ref).abs().max().item()
    print(f"gated delta blocked vs naive, decays to -10 a token (a chunk's log decay down to {lowest:.0f}, "
          f"floor -{EXP_FLOOR:.0f}): max |delta| = {err:.3g}")
    assert lowest < -EXP_FLOOR and err < 1e-4


def test_blocked_at_the_4b_head_sizes_many_prompts():
    """Head dim 128, 2 key heads serving 4 value heads, 40 prompts of odd lengths packed (several
    shorter than a chunk): against the chunked solve_triangular path and transformers' torch code."""
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 300, (40,), generator=gen).tolist() + [3, 64, 1]
    q, k, v, g, beta, cu = _inputs(lengths, dim_k=128, dim_v=128, decay=0.3)
    got = gated_delta_blocked(q, k, v, g, beta, cu)
    twin = gated_delta_chunked(q, k, v, g, beta, cu)
    hf = transformers_per_prompt(q, k, v, g, beta, cu)
    err_twin, err_hf = (got - twin).abs().max().item(), (got - hf).abs().max().item()
    print(f"gated delta blocked at head dim 128, {len(lengths)} prompts: max |delta| vs chunked {err_twin:.3g}, "
          f"vs transformers {err_hf:.3g} (output max {twin.abs().max().item():.3g})")
    assert err_twin < 1e-4 and err_hf < 1e-4


def test_step_layout_and_state_reset():
    layout = StepLayout.build([0, 3, 133, 134], 64, "cpu")
    # chunk counts 1, 3, 1 -> rank order: prompt 1, prompt 0, prompt 2; step 0 holds 3 chunks, then 1, 1
    assert layout.step_offsets == (0, 3, 4, 5) and layout.num_chunks == 5
    assert layout.row_slot[:3].tolist() == [64, 65, 66]             # prompt 0: rank 1, chunk 1 of step 0
    assert layout.row_slot[3].item() == 0 and layout.row_slot[3 + 64].item() == 3 * 64   # prompt 1: chunks 0, 3
    assert layout.row_slot[-1].item() == 2 * 64                      # prompt 2: rank 2
    lengths = [70, 5, 66]
    q, k, v, g, beta, cu = _inputs(lengths)
    before = gated_delta_blocked(q, k, v, g, beta, cu)
    v2 = v.clone()
    v2[:70] += 10.0
    after = gated_delta_blocked(q, k, v2, g, beta, cu)
    leak = (after[70:] - before[70:]).abs().max().item()
    print(f"gated delta blocked leak from prompt 0 into prompts 1-2: max |delta| = {leak:.3g}")
    assert leak == 0.0 and (after[:70] - before[:70]).abs().max() > 1.0


def test_bf16_drift_and_dispatch():
    """bf16 inputs run in float32 inside and come back bf16; the drift against fp32 inputs is the
    inputs' own rounding. The dispatcher runs the blocked path on the CPU by default."""
    lengths = [1, 100, 37, 64]
    q, k, v, g, beta, cu = _inputs(lengths, dim_k=128, dim_v=128, decay=0.3)
    fp32 = gated_delta_blocked(q, k, v, g, beta, cu)
    out = gated_delta_blocked(q.bfloat16(), k.bfloat16(), v.bfloat16(), g, beta.bfloat16(), cu)
    assert out.dtype == torch.bfloat16 and out.shape == v.shape
    drift = (out.float() - fp32).abs().max().item()
    print(f"gated delta blocked, bf16 inputs vs fp32: max |delta| = {drift:.3g} (output max {fp32.abs().max():.3g})")
    assert drift < 0.05
    assert torch.equal(gated_delta_rule(q, k, v, g, beta, cu, impl=select_kernels(q.device, q.dtype).gated_delta), fp32)
    with pytest.raises(TypeError, match="needs a StepLayout"):
        from judge_core.ops.gated_delta import ChunkLayout
        gated_delta_blocked(q, k, v, g, beta, cu, layout=ChunkLayout.build(cu.tolist(), 64, "cpu"))
    with pytest.raises(ValueError, match="chunk size 48"):
        StepLayout.build(cu.tolist(), 48, "cpu")
