"""`judge-core score --spec`: a pointwise spec end to end through the command line, and bad specs refused
before any model loads."""

from __future__ import annotations

import json

from judge_core.cli.main import main
from judge_core.specs import load_spec


def test_score_with_a_pointwise_spec(tmp_path, capsys):
    rows = [{"id": "a", "instruction": "Write a haiku.", "response": "Soft rain on tin roofs.", "criterion": "vivid"},
            {"id": "b", "instruction": "Write a haiku.", "response": "Rain. Wet."},                 # no criterion
            {"id": "c", "instruction": "Describe snow.", "response": "White hush.", "criterion": "concise"}]
    src, out = tmp_path / "items.jsonl", tmp_path / "scores.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["score", "tiny", str(src), "-o", str(out), "--spec", "yes-no-criterion", "--no-progress"]) == 0
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    print(got)
    spec = load_spec("yes-no-criterion")
    assert [r["id"] for r in got] == ["a", "b", "c"]
    assert "'criterion'" in got[1]["error"]
    for r in (got[0], got[2]):
        assert 0 < r["score"] < 1 and set(r["probs"]) == {"yes", "no"}
        assert abs(sum(r["probs"].values()) - 1) < 1e-9 and abs(r["score"] - r["probs"]["yes"]) < 1e-12
        assert (r["spec"], r["spec_hash"]) == (spec.name, spec.hash)
    # --resume accepts pointwise verdict rows as finished
    assert main(["score", "tiny", str(src), "-o", str(out), "--spec", "yes-no-criterion", "--resume",
                 "--no-progress"]) == 0
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == got


def test_bad_spec_is_a_usage_error_before_loading(tmp_path, capsys):
    bad = tmp_path / "judge.json"
    bad.write_text(json.dumps({"name": "x", "kind": "pointwise", "messages": [{"role": "user", "content": "{instruction}"}],
                               "labels": [{"text": "1", "value": 1}, {"text": "2", "value": 2}]}))
    src = tmp_path / "items.jsonl"
    src.write_text('{"id": "a", "instruction": "i", "response": "r"}\n')
    code = main(["score", "/nonexistent/model", str(src), "-o", str(tmp_path / "o.jsonl"), "--spec", str(bad)])
    err = capsys.readouterr().err
    print(err)
    assert code == 2 and "slot {response}" in err and not (tmp_path / "o.jsonl").exists()
