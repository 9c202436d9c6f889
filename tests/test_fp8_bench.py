"""`python -m bench --compare-quantization fp8`: which systems it adds and how their drift is paired and
computed (no model is loaded here; the end-to-end run is in bench/RESULTS_fp8.md)."""

from __future__ import annotations

import pytest

from bench.suite import BenchConfig, build_specs, quantization_drift
from bench.systems import SystemRun, SystemSpec, spec_key
from judge_core.scoring import PairScore


def _score(p1: float) -> PairScore:
    return PairScore(p1, 100 - p1, (p1, 100 - p1), (100 - p1, p1))


def test_compare_quantization_adds_one_fp8_twin_per_judge_core_system(tmp_path):
    cfg = BenchConfig(systems=("judge_core",), backends=("hf", "packed"), dtypes=("fp32", "bf16"),
                      compare_quantization="fp8", work_dir=str(tmp_path))
    specs, skipped = build_specs(cfg, "/ckpt", None)
    assert not skipped and len(specs) == 8
    fp8 = [s for s in specs if s.options.get("quantization") == "fp8"]
    assert [s.name for s in fp8] == ["judge_core hf fp32 fp8", "judge_core hf bf16 fp8", "judge_core packed fp32 fp8",
                                     "judge_core packed bf16 fp8"]
    names = {s.name for s in specs}
    assert all(s.options["unquantized"] in names and s.options["unquantized"] + " fp8" == s.name for s in fp8)
    # A quantized system is never served from the cache slot of its unquantized twin.
    assert len({spec_key(s) for s in specs}) == len(specs)
    plain, _ = build_specs(BenchConfig(systems=("judge_core",), work_dir=str(tmp_path)), "/ckpt", None)
    assert not any("quantization" in s.options for s in plain)


def test_quantization_drift_pairs_each_fp8_run_with_its_twin():
    base = SystemRun(SystemSpec("judge_core packed bf16", "judge_core", "/c", "bf16", "packed"),
                     scores=[_score(p) for p in (70.0, 40.0, 55.0, 50.0)], seconds=2.0)
    fp8 = SystemRun(SystemSpec("judge_core packed bf16 fp8", "judge_core", "/c", "bf16", "packed",
                               options={"quantization": "fp8", "unquantized": "judge_core packed bf16"}),
                    scores=[_score(p) for p in (71.0, 40.5, 49.0)] + [PairScore.failed("too long")], seconds=1.0)
    other = SystemRun(SystemSpec("judge_core hf bf16", "judge_core", "/c", "bf16", "hf"),
                      scores=[_score(0.0)] * 4, seconds=1.0)
    (row,) = quantization_drift([base, other, fp8])
    assert row["system"] == fp8.spec.name and row["against"] == base.spec.name
    assert row["pairs_compared"] == 3 and row["failed"] == 1
    assert row["max_abs_delta_p1"] == pytest.approx(6.0) and row["mean_abs_delta_p1"] == pytest.approx(7.5 / 3)
    assert row["verdict_agreement"] == pytest.approx(2 / 3) and row["speedup"] == pytest.approx(2.0)
    fp8.status = "failed"
    assert quantization_drift([base, fp8]) == []
