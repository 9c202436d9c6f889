"""bench/fidelity_4b.py end to end on the tiny judge (the 4B shape is the same code with a bigger
checkpoint): every system loads and scores, the comparisons are the ones documented, fp32 paths agree
with the reference twin, and the fp8 fast path (where the CPU's torch runs it) agrees with its twin."""

from __future__ import annotations

import json

import pytest

from bench.fidelity_4b import COMPARISONS, main


def test_fidelity_bench_on_the_tiny_judge(tiny_text_ckpt, tmp_path, capsys):
    import torch

    from judge_core.fp8.linear import scaled_mm_problem

    out = tmp_path / "fidelity.jsonl"
    assert main(["--model-dir", str(tiny_text_ckpt), "--pairs", "2", "--max-chars", "200", "--out", str(out)]) == 0
    rows = {r["row"]: r for r in map(json.loads, out.read_text().splitlines())}
    printed = capsys.readouterr().out
    assert rows["meta"]["command"].startswith("python -m bench.fidelity_4b")
    cpu_fast = scaled_mm_problem(torch.device("cpu")) is None
    for name, against in COMPARISONS:
        if "scaled_mm" in name and not cpu_fast:
            assert rows[name]["status"] == "skipped"
            continue
        row = rows[f"{name} vs {against}"]
        assert row["pairs_compared"] == 2, row
        assert f"| {name} | {against} | 2 |" in printed
    for name in ("hf fp32", "packed fp32"):
        err = rows[f"{name} vs reference twin fp32"]["max_abs_delta_p1"]
        print(f"fidelity bench, tiny judge: {name} vs reference twin fp32 max |dp1| = {err:.2e} pp")
        assert err < 1e-3
    # bf16 and fp8 drift are measured, not bounded here (the random tiny judge amplifies rounding), but
    # they must be real comparisons of different runs, not a run against itself.
    assert rows["packed fp8 twin vs packed bf16"]["max_abs_delta_p1"] > 0


def test_unknown_system_is_refused_naming_it(tmp_path):
    with pytest.raises(SystemExit, match="unknown \\['packed fp16'\\]"):
        main(["--systems", "packed fp16", "--out", str(tmp_path / "x.jsonl")])
