"""`judge-core demo` prints a cut instruction with an ellipsis and counts in the right number;
`judge-core quantize tiny --method fp8` refuses a block no weight fits, naming the sizes."""

import re

import pytest

from judge_core.cli.main import main


def test_demo_output_words(capsys):
    assert main(["demo", "--no-reference", "--backend", "hf", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"^\S+\s+\d+\.\d{3}\s", line)]
    assert rows and all(line.endswith("…") or len(line.split("  ")[-1]) < 40 for line in rows)
    assert any(line.endswith("…") for line in rows)  # the sample instructions are longer than the column
    n, word = re.search(r"in (\d+) (batch\w*),", out).groups()
    print(f"demo: {n} {word}")
    assert word == ("batch" if n == "1" else "batches")


def test_quantize_fp8_refuses_a_block_that_fits_no_weight(tmp_path, capsys):
    out = tmp_path / "fp8"
    with pytest.raises(SystemExit) as stop:
        main(["quantize", "tiny", str(out), "--method", "fp8"])
    err = capsys.readouterr().err
    print(err)
    assert stop.value.code == 2 and err.count("\n") == 1
    assert "no weight fits the 128x128 block" in err and "[64, 128]" in err and "--fp8-block 32 64" in err
    assert not out.exists()  # nothing labelled fp8 was written
