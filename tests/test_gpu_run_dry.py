"""bench/gpu_run.py end to end on the CPU (--cpu-dry-run): every step writes its JSONL row, the fp32 paths
agree with the reference twin, and --max-seconds skips steps cleanly."""

from __future__ import annotations

import json
import shutil

import pytest

# Whole processes, servers, clusters or bench runs: CI runs them (-m slow); README's fast set does not.
pytestmark = pytest.mark.slow


def _rows(out):
    return [json.loads(line) for line in (out / "gpu_run.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def dry_run(tiny_text_ckpt, tmp_path_factory):
    from bench.gpu_run import main

    root = tmp_path_factory.mktemp("gpu_run_dry")
    model = root / "model"
    shutil.copytree(tiny_text_ckpt, model)  # the GPTQ copy and kernel cache are written next to it
    out = root / "out"
    code = main(["--cpu-dry-run", "--model-dir", str(model), "--out", str(out)])
    return code, _rows(out)


def test_every_step_writes_its_rows(dry_run):
    code, rows = dry_run
    by_name = {r["row"]: r for r in rows}
    for r in rows:
        print({k: r.get(k) for k in ("row", "status", "prompt_tokens_per_s", "max_abs_delta_p1", "seconds")})
    assert code == 0
    assert rows[0]["row"] == "meta" and rows[0]["dry_run"] is True and "TRITON_CACHE_DIR" in rows[0]["kernel_caches"]
    assert not [r for r in rows if r.get("status") in ("failed", "FAIL")]
    expected = ["packed fp32 cold (first call in this process)", "packed fp32 warm",
                "packed fp32 new shapes (set B, first time)", "gptq packed fp32 first call", "gptq packed fp32 warm",
                "hf fp32 first call", "hf fp32 warm", "fresh process: load-time warm-up",
                "packed fp32 fresh process, kernel cache filled + warm-up (first call)",
                "reference twin fp32 parity pairs", "gptq quantize (rtn, g128)",
                "csrc causal_conv1d_varlen torch", "csrc gptq_dequant torch"]
    for name in expected:
        assert name in by_name, name
    timed = [r for r in rows if "prompt_tokens_per_s" in r]
    assert all(r["prompt_tokens"] > 0 and r["prompt_tokens_per_s"] > 0 and r["pair_errors"] in (0, None)
               for r in timed if r.get("system") != "plain")
    assert all("kernels" in r and r["peak_gpu_bytes"] is None for r in timed if r.get("system") != "plain")
    assert by_name["packed fp32 warm"]["pairs"] == 3 and by_name["packed fp32 new shapes (set B, first time)"]["pairs"] == 2
    plain = [r for r in rows if r.get("system") == "plain"]
    assert len(plain) == 1 and plain[0]["pairs"] >= 1  # at least one batch before the time cap
    assert by_name["gptq 8 GiB cap"]["status"] == "skipped"  # CUDA only


def test_fp32_parity_rows(dry_run):
    _, rows = dry_run
    parity = [r for r in rows if r["row"].startswith("parity ")]
    drift = [r for r in rows if r["row"].startswith("drift ")]
    assert len(parity) == 2 and len(drift) == 2
    for r in parity + drift:
        print(f"{r['row']}: max |d p1| = {r['max_abs_delta_p1']:.2e} pp over {r['pairs_compared']} pairs")
        assert r["pairs_compared"] == 2 and r["status"] == "ok"
    for r in parity:
        assert r["max_abs_delta_p1"] <= r["tolerance"]


def test_time_budget_skips_cleanly(tiny_text_ckpt, tmp_path):
    from bench.gpu_run import main

    out = tmp_path / "out"
    code = main(["--cpu-dry-run", "--model-dir", str(tiny_text_ckpt), "--out", str(out), "--max-seconds", "0"])
    rows = _rows(out)
    print(rows[1:])
    assert code == 1  # no model was built, so nothing could run
    assert rows[1]["row"] == "build" and rows[1]["status"] == "skipped" and "--max-seconds" in rows[1]["reason"]
