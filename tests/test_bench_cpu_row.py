"""bench.cpu_row end to end on one synthetic pair: the 4B-head-sizes checkpoint, a packed row with its
per-op split, the markdown table (no timing asserted: speed lives in bench/RESULTS.md)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_cpu_row_one_pair(tmp_path):
    from bench.cpu_row import HEAD_SIZES_4B, SPLIT_CATEGORIES, markdown, run_row

    result = run_row(systems=("packed-fp32",), threads=(1,), n_pairs=1, items=None, work_dir=str(tmp_path),
                     max_chars=300)
    config = json.loads((tmp_path / "tiny-qwen3_5-4b-head-sizes-seed0" / "config.json").read_text())
    assert all(config[k] == v for k, v in HEAD_SIZES_4B.items())
    (row,) = result["rows"]
    assert row["status"] == "ok", row
    assert row["prompts"] == 2 and row["tokens"] > 0 and row["tokens_per_s"] > 0
    split = row["split"]
    print(f"cpu row split on one pair: {split}")
    assert split["kernels"]["gated_delta"] == "blocked" and split["kernels"]["attention"] == "sdpa"
    assert all(split[c] >= 0 for c in SPLIT_CATEGORIES) and split["gated_delta"] > 0 and split["attention"] > 0
    assert sum(split[c] for c in SPLIT_CATEGORIES) == pytest.approx(split["forward_seconds"], rel=0.01, abs=0.01)
    assert "synthetic pairs" in result["workload"] and "responses cut to 300 chars" in result["workload"]
    assert "| packed-fp32 | 1 |" in markdown(result)
