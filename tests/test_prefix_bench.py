"""`python -m bench --prefix-scenarios` on the tiny judge: every scenario row, shared vs unshared, numbers agree."""

from __future__ import annotations


def test_prefix_scenarios_rows(tiny_text_ckpt, tmp_path):
    from bench.prefix_scenarios import markdown, run

    result = run(str(tiny_text_ckpt), n=4, response_tokens=40, instruction_tokens=70, threads=None, repeats=1,
                 out=str(tmp_path / "result.json"))
    rows = {r["scenario"]: r for r in result["rows"]}
    print(markdown(result))
    assert set(rows) == {"card pairs", "GRPO anchor n=4", "round-robin n=4", "tournament round"}
    for row in rows.values():
        assert row["computed_tokens"] <= row["prompt_tokens"] and row["max_abs_dp1_pp"] <= 1e-3
    # slot A shared by n - 1 prompts in round-robin: the largest cut of the four
    assert rows["round-robin n=4"]["token_cut"] > rows["card pairs"]["token_cut"] > 0
    assert result["host_batch_build"]["tokens"] == 32768 and (tmp_path / "result.json").exists()
