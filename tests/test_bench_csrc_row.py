"""bench/csrc_row.py: the rows the next GPU run decides the csrc kernels on (torch twins on the CPU here)."""

from __future__ import annotations

from bench.csrc_row import main, run_rows


def test_dry_run_rows(tmp_path):
    import torch

    rows = run_rows(torch.device("cpu"), dry_run=True, repeats=2)
    print(rows)
    assert [(r["op"], r["impl"], r["status"]) for r in rows] == [("causal_conv1d_varlen", "torch", "ok"),
                                                                 ("gptq_dequant", "torch", "ok")]
    assert all(r["seconds"] > 0 and r["max_abs_diff_vs_twin"] == 0.0 for r in rows)
    out = tmp_path / "rows.jsonl"
    assert main(["--cpu-dry-run", "--repeats", "2", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2


def test_needs_cuda_without_dry_run(capsys):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real rows")
    assert main([]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
