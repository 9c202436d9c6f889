"""`judge-core serve` faults and limits: every error status with a message naming the field or limit,
auth, queue full, timeout, disconnect (no model work for nobody), OOM split, warm-up, over-context."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from judge_core.api import Judge  # noqa: E402
from judge_core.client import JudgeClient, JudgeServerError  # noqa: E402
from judge_core.serve.app import create_app  # noqa: E402
from judge_core.serve.limits import ServeLimits  # noqa: E402
from judge_core.serve.scheduler import Scheduler  # noqa: E402

from serve_server import GatedBackend, RunningServer, post, post_json, serve_app, wait_until  # noqa: E402

PAIR = {"instruction": "Write a line.", "response_1": "A quiet line.", "response_2": "A loud — line!"}


@pytest.fixture(scope="module")
def judge(tiny_text_ckpt):
    return Judge.from_pretrained(tiny_text_ckpt, backend="packed", device="cpu", dtype="fp32")


def app_for(judge, limits=None, backend=None, **judge_kwargs):
    return serve_app(judge, limits, backend, **judge_kwargs)[0]


def test_request_errors_name_the_field_or_limit(judge):
    limits = ServeLimits(max_body_bytes=4000, max_pairs_per_request=3, max_queue_pairs=8)
    with RunningServer(app_for(judge, limits)) as url:
        cases = [
            ("/v1/compare", b"{not json", 400, "not valid JSON"),
            ("/v1/compare", b"[1, 2]", 422, "must be a JSON object"),
            ("/v1/compare", b"{}", 422, "missing field 'pairs'"),
            ("/v1/compare", b'{"pairs": {"a": 1}}', 422, "field 'pairs' must be a list"),
            ("/v1/compare", json.dumps({"pairs": [PAIR] * 4}).encode(), 422, "max_pairs_per_request=3"),
            ("/v1/compare", json.dumps({"pairs": [PAIR] * 3, "pad": "x" * 5000}).encode(), 413, "max_body_bytes=4000"),
            ("/v1/rewards", b'{"groups": [{"responses": ["a"]}]}', 422, "groups[0].instruction"),
            ("/v1/rewards", b'{"groups": [{"instruction": "i", "responses": ["a", 3]}]}', 422,
             "groups[0].responses[1] must be a string"),
            ("/v1/rewards", b'{"groups": [{"instruction": "i", "responses": []}]}', 422, "groups[0].responses"),
            ("/v1/rewards", b'{"groups": [{"instruction": "i", "responses": ["a","b","c"], "reference": 1}]}', 422,
             "groups[0].reference"),
            # 3 responses round robin = 3 pairs (ok); 4 responses = 6 pairs > 3
            ("/v1/rewards", b'{"groups": [{"instruction": "i", "responses": ["a","b","c","d"]}]}', 422,
             "makes 6 pairs"),
            ("/get_reward", b'{"query": ["pa"], "prompts": ["p", "q"]}', 422, "same length"),
            ("/get_reward", b'{"query": ["pa"]}', 422, "missing field 'prompts'"),
        ]
        for path, body, status, needle in cases:
            got_status, got, _ = post(url + path, body)
            assert got_status == status, (path, body[:60], got)
            assert needle in got["error"], (needle, got["error"])
        # A bad pair is an entry beside good ones, never a failed request.
        status, got, _ = post_json(url + "/v1/compare", {"pairs": [PAIR, {"id": 7, "instruction": "x"}, "nope"]})
        assert status == 200
        assert set(got["results"][0]) == {"p1", "p2", "pass1", "pass2"}
        assert got["results"][1] == {"id": 7, "error": "missing fields 'response_1', 'response_2'"}
        assert "got str" in got["results"][2]["error"]
        metrics = urllib.request.urlopen(url + "/metrics").read().decode()
        assert 'judge_requests_total{endpoint="/v1/compare",status="422"} 4' in metrics
        assert 'judge_requests_total{endpoint="/get_reward",status="422"} 2' in metrics
        assert "judge_pair_errors_total 2" in metrics


def test_over_context_pair_is_an_error_entry(judge):
    with RunningServer(app_for(judge, max_context=120)) as url:
        long = dict(PAIR, response_1="word " * 200)
        results = JudgeClient(url).compare([PAIR, long])
    offline = Judge(judge.backend, judge.tokenizer, max_context=120).compare_many([PAIR, long])
    assert "p1" in results[0] and results[0]["p1"] == offline[0].p1
    assert results[1] == {"error": offline[1].error} and "exceeds the model's context of 120" in offline[1].error


def test_auth(judge, monkeypatch):
    from judge_core.serve.limits import api_key_from

    monkeypatch.setenv("JUDGE_CORE_API_KEY", "env-key")
    assert api_key_from(None) == "env-key" and api_key_from("flag") == "flag"
    with RunningServer(app_for(judge, ServeLimits(api_key=api_key_from(None)))) as url:
        body = json.dumps({"pairs": [PAIR]}).encode()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "env-key"}):
            status, got, resp_headers = post(url + "/v1/compare", body, headers)
            assert status == 401 and "API key" in got["error"] and resp_headers.get("www-authenticate") == "Bearer"
        status, got, _ = post(url + "/v1/compare", body, {"Authorization": "Bearer env-key"})
        assert status == 200 and "p1" in got["results"][0]
        with pytest.raises(JudgeServerError) as e:
            JudgeClient(url, api_key="wrong").rewards([{"instruction": "i", "responses": ["a", "b"]}])
        assert e.value.status == 401
        assert JudgeClient(url, api_key="env-key").rewards([{"instruction": "i", "responses": ["a", "b"]}])[0]
        # /health and /metrics stay open for probes and scrapers.
        assert JudgeClient(url).health()["status"] == "ok"
        assert urllib.request.urlopen(url + "/metrics").status == 200


def test_queue_full_then_recovers(judge):
    gated = GatedBackend(judge.backend)
    limits = ServeLimits(max_pairs_per_request=2, max_queue_pairs=2)
    app = app_for(judge, limits, backend=gated)
    with RunningServer(app) as url:
        gated.gate.clear()
        gated.entered.clear()
        first: list = []
        t1 = threading.Thread(target=lambda: first.append(JudgeClient(url).compare([PAIR])))
        t1.start()
        wait_until(gated.entered.is_set, what="the first batch to reach the model")  # its 2 prompts left the queue
        gated.prompts_run, gated.batch_sizes = 0, []  # forget the warm-up batch
        later: list = []
        waiting = [threading.Thread(target=lambda: later.append(JudgeClient(url).compare([PAIR]))) for _ in range(2)]
        for t in waiting:
            t.start()
        wait_until(lambda: app.state.scheduler.queued_prompts == 4, what="the queue to hold 2 pairs")
        with pytest.raises(JudgeServerError) as e:
            JudgeClient(url).compare([PAIR])
        assert e.value.status == 503 and e.value.retry_after == 1.0 and "queue full" in e.value.message
        gated.gate.set()
        t1.join(60)
        for t in waiting:
            t.join(60)
    # The two queued requests ran as ONE batch of 4 prompts: the scheduler merges requests.
    assert gated.batch_sizes == [2, 4]
    expected = judge.compare(*PAIR.values())
    assert [r[0]["p1"] for r in first + later] == pytest.approx([expected.p1] * 3, abs=5e-4)


def test_timeout_and_disconnect_drop_queued_prompts(judge):
    gated = GatedBackend(judge.backend)
    app = app_for(judge, ServeLimits(request_timeout_s=2.0), backend=gated)
    scheduler = app.state.scheduler
    with RunningServer(app) as url:
        gated.prompts_run, gated.batch_sizes = 0, []  # forget the warm-up batch
        gated.gate.clear()
        gated.entered.clear()
        blocker: list = []
        t = threading.Thread(target=lambda: blocker.append(post_json(url + "/v1/compare", {"pairs": [PAIR]})))
        t.start()
        wait_until(gated.entered.is_set, what="the first batch to reach the model")
        # Timeout: queued behind the held batch, answered 504, its prompts leave the queue.
        status, got, _ = post_json(url + "/v1/compare", {"pairs": [PAIR] * 3})
        assert status == 504 and "request_timeout_s=2.0" in got["error"]
        assert scheduler.queued_prompts == 0
        # Disconnect: a client sends a request and hangs up before the answer.
        body = json.dumps({"pairs": [PAIR] * 4}).encode()
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
            sock.sendall(b"POST /v1/compare HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            wait_until(lambda: scheduler.queued_prompts == 8, what="the request's 8 prompts to be queued")
        wait_until(lambda: scheduler.queued_prompts == 0, what="the gone client's prompts to leave the queue")
        gated.gate.set()
        t.join(60)
    # The held request timed out too; its batch was already running, so it finished, unread.
    assert blocker[0][0] == 504
    # Only that batch's two prompts ever reached the model (the timed-out 6 and the gone 8 did not).
    assert gated.prompts_run == 2, gated.batch_sizes
    assert app.state.metrics.cancelled == 3


def test_oom_splits_batches_as_offline(judge):
    pairs = [dict(PAIR, response_1=PAIR["response_1"] * k) for k in range(1, 5)]
    offline = judge.compare_many(pairs)
    gated = GatedBackend(judge.backend, oom_above=1)  # any batch of 2+ prompts "runs out of memory"
    with RunningServer(app_for(judge, backend=gated)) as url:
        got = JudgeClient(url).compare(pairs)
    err = max(abs(g["p1"] - s.p1) for g, s in zip(got, offline))
    print(f"serve with OOM splits vs offline: max |d| = {err:.2e} pp, batch sizes {gated.batch_sizes}")
    assert set(gated.batch_sizes) == {1} and err <= 5e-4


def test_health_is_503_until_warm(judge):
    release = threading.Event()

    def load():
        release.wait(60)
        return judge

    limits = ServeLimits()
    scheduler = Scheduler(load=load, max_queue_prompts=100)
    with RunningServer(create_app(scheduler, limits), wait_ready=False) as url:
        with pytest.raises(JudgeServerError) as e:
            JudgeClient(url).health()
        assert e.value.status == 503
        status, got, headers = post_json(url + "/v1/compare", {"pairs": [PAIR]})
        assert status == 503 and "warming up" in got["error"] and headers.get("retry-after") == "1"
        release.set()
        wait_until(scheduler.ready.is_set, what="warm-up")
        assert JudgeClient(url).health()["status"] == "ok"


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_queue_pairs"):
        ServeLimits(max_pairs_per_request=10, max_queue_pairs=5)
    with pytest.raises(ValueError, match="request_timeout_s"):
        ServeLimits(request_timeout_s=0)


def test_missing_fastapi_prints_install_hint(monkeypatch, capsys):
    import sys

    from judge_core.cli import serve

    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert serve.run(object()) == 2
    assert "pip install 'judge_core[serve]'" in capsys.readouterr().err
