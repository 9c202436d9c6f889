"""`judge-core serve --spec`: POST /v1/score in SGLang's shape gives `judge.score_many`'s numbers; bad items are
item errors; what the served judge cannot do is a 400 naming the field; the served spec's kind picks the routes."""

from __future__ import annotations

import json
import math
import threading
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from judge_core.api import Judge  # noqa: E402
from judge_core.serve.limits import ServeLimits  # noqa: E402

from serve_server import GatedBackend, RunningServer, post, post_json, serve_app, wait_until  # noqa: E402

RUBRIC = "1: flat ... 5: vivid"
RESPONSES = ["Soft rain on tin roofs, the night hums.", "Rain. Wet.", "Snow muffles the trams; lamps blink awake.",
             "The clock stopped at nine, and so did Mr. Hale."]


@pytest.fixture(scope="module", params=["pointwise-rubric", "yes-no-criterion"])
def judge(request, tiny_text_ckpt):
    """pointwise-rubric: full-vocabulary readout (mass); yes-no-criterion: softmax over its two labels."""
    return Judge.from_pretrained(tiny_text_ckpt, backend="packed", device="cpu", dtype="fp32", spec=request.param)


def app_for(judge, limits=None, backend=None, **kwargs):
    return serve_app(judge, limits, backend, spec=judge.spec, **kwargs)[0]


def slots(judge) -> dict:
    """The slots beyond instruction and response that the spec's messages use."""
    used = set().union(*(m.slots() for m in judge.spec.messages))
    return {k: v for k, v in {"rubric": RUBRIC, "criterion": "Uses imagery"}.items() if k in used}


def max_diff(row: list[float], want: tuple[float, ...]) -> float:
    return max(abs(a - b) for a, b in zip(row, want))


def test_v1_score_equals_score_many(judge):
    spec = judge.spec
    shared = {"instruction": "Write a line about weather.", **slots(judge)}
    # Two forms of one request: the query as the instruction text (slots on the items), or as shared slots.
    items = [{"response": r, **slots(judge), "id": f"r{i}"} for i, r in enumerate(RESPONSES)]
    offline = judge.score_many([{"instruction": shared["instruction"], "response": r, **slots(judge)}
                                for r in RESPONSES])
    with RunningServer(app_for(judge)) as url:
        status, by_text, _ = post_json(url + "/v1/score", {"query": shared["instruction"], "items": items,
                                                            "apply_softmax": True, "model": "anything"})
        status2, by_slots, _ = post_json(url + "/v1/score", {"query": shared, "items": RESPONSES,
                                                              "label_token_ids": list(judge.label_ids)})
    assert status == status2 == 200, (by_text, by_slots)
    errors = []
    for k, want in enumerate(offline):
        result = by_text["results"][k]
        assert result["id"] == f"r{k}" and set(result["probs"]) == set(spec.label_texts)
        errors.append(abs(result["score"] - want.score))
        errors.append(max_diff([result["probs"][t] for t in spec.label_texts], want.probs))
        # apply_softmax: probabilities over the labels; off (SGLang's default): what the model read per label.
        over_labels = [p / sum(want.probs) for p in want.probs]
        errors.append(max_diff(by_text["scores"][k], over_labels))
        errors.append(max_diff(by_slots["scores"][k], want.logits))
        assert abs(sum(by_text["scores"][k]) - 1) < 1e-9
        if spec.readout == "full":
            errors.append(abs(result["mass"] - want.mass))
            assert all(x < 0 for x in by_slots["scores"][k])  # log-probabilities over the vocabulary
        else:
            assert "mass" not in result
        assert by_slots["results"][k]["score"] == pytest.approx(want.score, abs=1e-6)
    err = max(errors)
    print(f"/v1/score ({spec.name}, {spec.readout} readout) vs score_many on {len(RESPONSES)} items: max |d| = {err:.2e}")
    assert err < 1e-6
    # SGLang's answer, with judge_core's fields beside it
    assert by_text["object"] == by_slots["object"] == "scoring"
    assert by_text["model"] == by_slots["model"] == "judge_core"  # the served model (here: no checkpoint path)
    assert len(by_text["scores"]) == len(RESPONSES) and all(len(r) == len(spec.labels) for r in by_text["scores"])
    assert (by_text["spec"], by_text["spec_hash"], by_text["fidelity"]) == (spec.name, spec.hash, spec.fidelity)
    assert by_text["labels"] == list(spec.label_texts) and by_text["label_values"] == list(spec.label_values)
    assert by_text["label_token_ids"] == list(judge.label_ids)
    usage = by_text["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] == sum(s.tokens for s in offline)
    assert usage["completion_tokens"] == 0


def test_bad_items_are_item_errors(judge):
    extra = slots(judge)
    good = {"response": "A fine line.", **extra}
    items = [good, "A line with a lone \ud800 surrogate", {"response": "r", "instruction": 5}, 7, [1, 2, 3],
             {**good, "critic": "typo"}, {"response": "word " * 400, **extra}, good]
    # json.dumps writes the lone surrogate as the escape \ud800, as a client's JSON encoder does
    body = json.dumps({"query": {"instruction": "Write.", **extra}, "items": items}).encode()
    assert b"\\ud800" in body
    with RunningServer(app_for(judge, max_context=200)) as url:
        # the query's slots are shared by every item; an item's own slots override them
        status, got, _ = post(url + "/v1/score", body)
        print(json.dumps(got["results"], indent=None)[:600])
        assert status == 200, got
        results, rows = got["results"], got["scores"]
        assert len(results) == len(rows) == len(items)
        assert "score" in results[0] and rows[0] is not None
        assert rows[1] is None and "lone surrogate" in results[1]["error"]
        assert rows[2] is None and "instruction must be a string" in results[2]["error"]
        assert rows[3] is None and "got int" in results[3]["error"]
        assert rows[4] is None and "token ids" in results[4]["error"]
        assert rows[5] is None and "'critic'" in results[5]["error"]
        assert rows[6] is None and "exceeds the model's context of 200" in results[6]["error"]
        assert results[7]["score"] == results[0]["score"]
        # without a query, an item lacking a slot names it
        status, got, _ = post_json(url + "/v1/score", {"items": ["just a response", {"instruction": "i", **good}]})
        assert status == 200 and "'instruction'" in got["results"][0]["error"] and "score" in got["results"][1]


def test_what_the_judge_cannot_do_is_a_400_naming_the_field(judge):
    ids = list(judge.label_ids)
    query = {"instruction": "Write.", **slots(judge)}
    cases = [
        ({"query": query, "items": ["a"], "label_token_ids": ids[::-1]}, 400, "label_token_ids"),
        ({"query": query, "items": ["a"], "label_token_ids": [1, 2]}, 400, str(ids)),
        ({"query": query, "items": ["a"], "item_first": True}, 400, "item_first"),
        ({"query": [1, 2, 3], "items": ["a"]}, 400, "field 'query': token ids"),
        ({"query": query}, 422, "missing field 'items'"),
        ({"query": query, "items": ["a"], "apply_softmax": "yes"}, 422, "apply_softmax"),
        ({"query": query, "items": ["a"], "temperature": 0}, 422, "unknown field 'temperature'"),
        ({"query": {"instruction": 5}, "items": ["a"]}, 422, "query.instruction"),
        ({"query": query, "items": ["a"], "label_token_ids": ["A"]}, 422, "label_token_ids"),
        ({"query": query, "items": ["a"] * 4}, 422, "max_pairs_per_request=3"),
    ]
    with RunningServer(app_for(judge, ServeLimits(max_pairs_per_request=3, max_queue_pairs=8))) as url:
        for body, status, needle in cases:
            got_status, got, _ = post_json(url + "/v1/score", body)
            print(f"{got_status} {got['error'][:120]}")
            assert got_status == status and needle in got["error"], (body, got)
        mismatch = post_json(url + "/v1/score", cases[0][0])[1]["error"]
        assert str(ids[::-1]) in mismatch and str(ids) in mismatch  # both lists
        # the served spec's own ids are accepted; a single string is one item, as in SGLang
        status, got, _ = post_json(url + "/v1/score", {"query": query, "items": "a", "label_token_ids": ids})
        assert status == 200 and len(got["scores"]) == 1
        # a pointwise spec served: the pair and reward routes refuse, naming /v1/score
        pair = {"instruction": "i", "response_1": "a", "response_2": "b"}
        for path, body in (("/v1/compare", {"pairs": [pair]}),
                           ("/v1/rewards", {"groups": [{"instruction": "i", "responses": ["a", "b"]}]}),
                           ("/get_reward", {"query": ["pa"], "prompts": ["p"]}),
                           ("/v1/group_reward", {"instruction": "i", "response": "a", "reference": "b"}),
                           ("/slime_reward", {"prompt": "p", "response": "a", "label": "b"})):
            got_status, got, _ = post_json(url + path, body)
            assert got_status == 400 and "is pointwise" in got["error"] and "/v1/score" in got["error"], (path, got)
        metrics = urllib.request.urlopen(url + "/metrics").read().decode()
        assert 'judge_requests_total{endpoint="/v1/score",status="400"}' in metrics


def test_pairwise_spec_served_refuses_v1_score(tiny_text_ckpt):
    judge = Judge.from_pretrained(tiny_text_ckpt, backend="packed", device="cpu", dtype="fp32")  # the card's
    with RunningServer(serve_app(judge)[0]) as url:
        status, got, _ = post_json(url + "/v1/score", {"query": "i", "items": ["a"]})
        print(got["error"])
        assert status == 400 and "is pairwise" in got["error"] and "/v1/compare" in got["error"]
        status, got, _ = post_json(url + "/v1/compare", {"pairs": [["i", "a", "b"]]})
        assert status == 200 and "p1" in got["results"][0]


def test_admission_and_queue_limits_apply(judge):
    """One prompt per pointwise item: the queue counts them so, and a full queue is a 503 before any work."""
    gated = GatedBackend(judge.backend)
    limits = ServeLimits(max_pairs_per_request=2, max_queue_pairs=2)  # 4 prompts: 4 pointwise items
    app = app_for(judge, limits, backend=gated)
    query = {"instruction": "Write.", **slots(judge)}
    with RunningServer(app) as url:
        gated.gate.clear()
        gated.entered.clear()
        answers: list = []
        first = threading.Thread(target=lambda: answers.append(post_json(url + "/v1/score",
                                                                         {"query": query, "items": ["a", "b"]})))
        first.start()
        wait_until(gated.entered.is_set, what="the first batch to reach the model")
        waiting = [threading.Thread(target=lambda: answers.append(post_json(url + "/v1/score",
                                                                            {"query": query, "items": ["c", "d"]})))
                   for _ in range(2)]
        for t in waiting:
            t.start()
        wait_until(lambda: app.state.scheduler.queued_prompts == 4, what="the queue to hold 4 items")
        status, got, headers = post_json(url + "/v1/score", {"query": query, "items": ["e"]})
        assert status == 503 and "queue full" in got["error"] and headers["retry-after"] == "1"
        gated.gate.set()
        for t in [first, *waiting]:
            t.join(60)
    assert [a[0] for a in answers] == [200, 200, 200]
    assert all(math.isfinite(r["score"]) for a in answers for r in a[1]["results"])


def test_serve_refuses_a_bad_spec_before_binding(tmp_path, capsys):
    from judge_core.cli.main import main

    bad = tmp_path / "judge.json"
    bad.write_text(json.dumps({"name": "x", "kind": "pointwise", "labels": [{"text": "1", "value": 1}],
                               "messages": [{"role": "user", "content": "{response}"}]}))
    with pytest.raises(SystemExit) as e:
        main(["serve", "/nonexistent/model", "--spec", str(bad), "--port", "1"])  # port 1: binding would fail
    err = capsys.readouterr().err
    print(err)
    assert e.value.code == 2 and "labels has 1 entry" in err and "cannot listen" not in err
