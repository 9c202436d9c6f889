"""`judge-core score`: one output row per input row, in order; error rows; --resume."""

import json

import pytest

from judge_core.cli.main import main


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def input_file(tmp_path):
    good = lambda i: json.dumps({"id": f"p{i}", "instruction": "Write “x”.", "response_1": "a " * i,
                                 "response_2": "b — " * (5 - i)}, ensure_ascii=False)
    lines = [
        good(1),
        "{not json",
        json.dumps({"id": "p2", "instruction": "x", "response_1": "a"}),          # missing response_2
        json.dumps({"id": "p3", "instruction": "x", "response_1": 1, "response_2": "b"}),  # non-string
        json.dumps({"instruction": "x", "response_1": "a", "response_2": "b"}),   # no id
        json.dumps({"id": "p4", "instruction": "x", "response_1": "long " * 600, "response_2": "b"}),
        good(5),
        json.dumps(["not", "an", "object"]),
    ]
    path = tmp_path / "in.jsonl"
    write_lines(path, lines)
    return path


def run_score(model, inp, out, *extra):
    return main(["score", str(model), str(inp), "-o", str(out), "--no-progress", "--backend", "hf", *extra])


def test_score_writes_one_row_per_input_in_order(tiny_text_ckpt, input_file, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run_score(tiny_text_ckpt, input_file, out, "--max-context", "500") == 0  # p4 is over-long
    rows = read_rows(out)
    assert len(rows) == 8
    assert [r.get("id") for r in rows] == ["p1", None, "p2", "p3", None, "p4", "p5", None]
    assert set(rows[0]) == {"id", "p1", "p2", "pass1", "pass2"} and abs(rows[0]["p1"] + rows[0]["p2"] - 100) < 1e-9
    assert "invalid JSON" in rows[1]["error"] and rows[1]["line"] == 2
    assert "missing field 'response_2'" in rows[2]["error"]
    assert "response_1 must be a string" in rows[3]["error"]
    assert "missing or invalid 'id'" in rows[4]["error"] and rows[4]["line"] == 5
    assert "exceeds the model's context" in rows[5]["error"]
    assert "p1" in rows[6] and "expected a JSON object" in rows[7]["error"]
    assert "2 scored, 6 failed (3 malformed lines)" in capsys.readouterr().err


def test_resume_skips_done_ids(tiny_text_ckpt, input_file, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    # a previous run that finished the first row, then died mid-write of the next
    write_lines(out, [json.dumps({"id": "p1", "p1": 12.5, "p2": 87.5, "pass1": [1, 99], "pass2": [76, 24]}),
                      '{"id": "p2", "err'])
    assert run_score(tiny_text_ckpt, input_file, out, "--resume") == 0
    assert "dropped its last 18 bytes" in capsys.readouterr().err  # the torn row, newline included
    rows = read_rows(out)  # every line whole JSON: the torn one was cut off, not glued onto
    ids = [r.get("id") for r in rows]
    assert ids.count("p1") == 1 and rows[0]["p1"] == 12.5  # not redone
    assert ids == ["p1", None, "p2", "p3", None, "p4", "p5", None]  # every input row exactly once, in order
    # a second resume has nothing left to do
    assert run_score(tiny_text_ckpt, input_file, out, "--resume") == 0
    assert read_rows(out) == rows


def test_missing_input_file(tmp_path, capsys):
    assert main(["score", "tiny", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "nope.jsonl: No such file or directory" in err and err.count("\n") == 1
