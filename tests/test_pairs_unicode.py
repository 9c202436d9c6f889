"""A pair holding a lone surrogate ("\\ud800", which a JSON line decodes to) is an error row for that pair,
naming the field, in either JSON mode; the other pairs are judged as if it were not there. Library and CLI."""

import json

import pytest

from judge_core.api import Judge
from judge_core.cli.main import main
from judge_core.pairs import PairError, normalize_pair

GOOD = [("Write a line.", "The sea — “grey”.", "A cat sat."), ("Rate it.", "short", "a longer answer here")]
BAD = ("Write a line.", "broken \ud800 emoji", "fine")


@pytest.fixture(scope="module")
def judge():
    return Judge.from_pretrained("tiny", device="cpu", backend="hf", ascii_json=False)


def test_normalize_pair_names_the_field_and_position():
    with pytest.raises(PairError, match=r"response_1 is not valid Unicode: a lone surrogate U\+D800 at character 7"):
        normalize_pair(BAD)
    with pytest.raises(PairError, match="instruction is not valid Unicode"):
        normalize_pair({"instruction": "\udfff", "response_1": "a", "response_2": "b"})
    assert normalize_pair(("é", "😀", "—")) == ("é", "😀", "—")  # a whole surrogate pair is a real character


@pytest.mark.parametrize("ascii_json", [False, True])
def test_compare_many_answers_an_error_row_for_that_pair_only(judge, ascii_json, monkeypatch):
    monkeypatch.setattr(judge, "ascii_json", ascii_json)  # the one switch prompt() reads (one load for both)
    alone = judge.compare_many(GOOD)
    mixed = judge.compare_many([GOOD[0], BAD, GOOD[1]])
    assert len(mixed) == 3
    assert mixed[1].error and "response_1 is not valid Unicode" in mixed[1].error
    worst = max(abs(a.p1 - b.p1) for a, b in zip(alone, (mixed[0], mixed[2])))
    print(f"ascii_json={ascii_json}: good pairs beside the bad one vs alone: max |d p1| = {worst:.2e} pp")
    assert mixed[0].ok and mixed[2].ok and worst < 1e-3


def test_score_cli_writes_an_error_row_and_every_good_row(tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    rows = [{"id": "a", "instruction": GOOD[0][0], "response_1": GOOD[0][1], "response_2": GOOD[0][2]},
            {"id": "b", "instruction": "x", "response_1": "y", "response_2": "\ud800"},
            {"id": "\udc00", "instruction": "x", "response_1": "y", "response_2": "z"},  # even the id
            {"id": "c", "instruction": GOOD[1][0], "response_1": GOOD[1][1], "response_2": GOOD[1][2]}]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json.dumps writes "\ud800" escaped
    out = tmp_path / "out.jsonl"
    assert main(["score", "tiny", str(inp), "-o", str(out), "--unicode-json", "--no-progress", "--device", "cpu"]) == 0
    got = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]  # valid UTF-8 throughout
    assert [r["id"] for r in got] == ["a", "b", "\udc00", "c"]
    assert "response_2 is not valid Unicode" in got[1]["error"]
    assert "p1" in got[0] and "p1" in got[2] and "p1" in got[3]
    assert "done: 3 scored, 1 failed" in capsys.readouterr().err
    # and --resume reads that OUT back as this input's rows (the escaped id included)
    assert main(["score", "tiny", str(inp), "-o", str(out), "--unicode-json", "--no-progress", "--resume"]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "\udc00", "c"]


def test_scoring_service_answers_an_error_row_for_that_pair_only(judge):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import urllib.request

    from judge_core.serve.app import create_app
    from judge_core.serve.limits import ServeLimits
    from judge_core.serve.metrics import ServeMetrics
    from judge_core.serve.scheduler import Scheduler
    from serve_server import RunningServer

    served = Judge(judge.backend, judge.tokenizer, ascii_json=False)
    limits, metrics = ServeLimits(), ServeMetrics()
    app = create_app(Scheduler(served, max_queue_prompts=64, metrics=metrics), limits, metrics)
    pairs = [dict(zip(("instruction", "response_1", "response_2"), p)) for p in (GOOD[0], BAD, GOOD[1])]
    with RunningServer(app) as url:
        body = json.dumps({"pairs": pairs}).encode()  # the lone surrogate travels as the escape "\ud800"
        request = urllib.request.Request(url + "/v1/compare", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            results = json.loads(response.read())["results"]
    assert "response_1 is not valid Unicode" in results[1]["error"]
    assert "p1" in results[0] and "p1" in results[2]
