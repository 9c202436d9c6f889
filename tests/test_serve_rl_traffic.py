"""`judge-core serve` under the RL traffic that once broke it (issue 17, item 3), each case against a
real server on loopback (uvicorn in a thread, the service's own protocol and limits) and the real
tiny judge. Case -> test:

- a whole OpenRLHF rollout batch (128 prompts x 8 samples = 3,584 pairs) in one request: admitted
  at the default limits -> test_whole_openrlhf_batch_is_admitted_at_default_limits
- a query that does not start with its prompt, a numeric label: per-item errors, the rest scored
  -> test_get_reward_bad_items_are_item_errors
- a 15 MB string: over the context by its characters, never tokenized, and tokenizing holds no
  global lock -> test_huge_string_is_over_context_without_tokenizing, test_tokenizing_holds_no_global_lock
- a 15 MB body is parsed and validated off the event loop -> test_body_is_parsed_off_the_event_loop
- NaN / Infinity / lone surrogate ids, deep nesting, a 5,000-digit integer: 400 JSON before any work,
  counted in /metrics -> test_bad_json_values_are_400_before_any_work
- slow clients (half a request head, half a body) -> test_slow_clients_are_cut_off
- queue full: 503 with Retry-After before tokenizing -> test_queue_full_is_refused_before_tokenizing
- a request that cannot finish before the client's deadline: 503 at once -> test_deadline_503_is_early
- /openapi.json schemas, /docs, 404/405 as {"error"} -> test_openapi_docs_and_error_shapes
(the signal, port and flag cases run the CLI as a process: test_serve_process.py)
"""

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
from judge_core.serve.limits import ServeLimits  # noqa: E402

from serve_server import GatedBackend, RunningServer, post_json, post, wait_until  # noqa: E402
from serve_server import serve_app as served  # noqa: E402

PAIR = {"instruction": "Write a line.", "response_1": "A quiet line.", "response_2": "A loud line!"}


@pytest.fixture(scope="module")
def judge(tiny_text_ckpt):
    return Judge.from_pretrained(tiny_text_ckpt, backend="packed", device="cpu", dtype="fp32")


class CountingTokens:
    """The judge's real PromptTokenizer, recording what it was asked to tokenize (and optionally
    holding a call that tokenizes a marked text until `release` is set)."""

    def __init__(self, inner, hold_marker: str | None = None):
        self.inner = inner
        self.max_chars_per_token = inner.max_chars_per_token
        self.calls: list[int] = []  # prompts per call
        self.longest: list[int] = []
        self.hold_marker = hold_marker
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, prompts, users):
        self.calls.append(len(prompts))
        self.longest.append(max((len(p) for p in prompts), default=0))
        # users[i]: the messages of prompt i that hold request text (a tuple; a str in the card's old shape)
        texts = [u if isinstance(u, str) else "".join(u) for u in users]
        if self.hold_marker is not None and any(self.hold_marker in u for u in texts):
            self.holding.set()
            assert self.release.wait(60), "test never released the held tokenize call"
        return self.inner(prompts, users)


def metric(url: str, line_start: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return float(next((line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)), 0))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_whole_openrlhf_batch_is_admitted_at_default_limits(judge):
    """128 prompts x 8 samples, unlabelled: 128 round robins of 28 pairs = 3,584 pairs, 7,168 prompts.
    Scoring them takes minutes on a CPU; what broke was admission (422 at 1,024 pairs), so the test
    waits until all 7,168 prompts are queued or run, then hangs up (the rest leave the queue)."""
    gated = GatedBackend(judge.backend)
    app, _ = served(judge, backend=gated)
    scheduler = app.state.scheduler
    prompts = [f"<|im_start|>user\nWrite poem {p} about the sea.<|im_end|>\n<|im_start|>assistant\n" for p in range(128)]
    body = {"query": [prompts[p] + f"sample {s}" for p in range(128) for s in range(8)],
            "prompts": [prompts[p] for p in range(128) for s in range(8)], "labels": [""] * 1024}
    data = json.dumps(body).encode()
    with RunningServer(app) as url:
        gated.gate.clear()
        gated.entered.clear()
        with socket.create_connection(("127.0.0.1", port_of(url))) as sock:
            sock.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            wait_until(gated.entered.is_set, 300, "the batch's first window to reach the model")
            queued = scheduler.queued_prompts
            print(f"3,584-pair OpenRLHF request: {queued} prompts queued behind the first window")
            assert queued > 7168 - 2 * 1024  # all of it admitted (a window holds at most a budget's worth)
        wait_until(lambda: scheduler.queued_prompts == 0, 60, "the gone client's prompts to leave the queue")
        gated.gate.set()
    assert app.state.metrics.requests.get(("/get_reward", 422), 0) == 0


def test_get_reward_bad_items_are_item_errors(judge):
    app, served_judge = served(judge)
    prompt = "Write a haiku about rain.\n"
    responses = ["Soft rain on tin roofs", "Rain. Wet.", "Clouds weep on the hills"]
    body = {"query": [prompt + responses[0], "Other prompt\nx", prompt + responses[1], prompt + responses[2],
                      prompt + "vs a label", 7],
            "prompts": [prompt, prompt, prompt, prompt, prompt, prompt],
            "labels": ["", "", None, "", 3.5, ""]}
    with RunningServer(app) as url:
        status, got, _ = post_json(url + "/get_reward", body)
    assert status == 200, got
    assert got["errors"] == [
        {"index": 1, "error": "query[1] does not start with prompts[1]: OpenRLHF sends query = prompt + response"},
        {"index": 4, "error": "labels[4] must be a string (the reference response) or null, got float"},
        {"index": 5, "error": "query[5] must be a string, got int"}]
    assert got["extra_logs"]["judge_failed"] == [0.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    # The good items play their round robin as if the bad ones had not been sent.
    wins = [0.0] * 3
    for i in range(3):
        for j in range(i + 1, 3):
            s = served_judge.compare(prompt, responses[i], responses[j])
            wins[i] += s.p1 / 100
            wins[j] += s.p2 / 100
    expected = [w / 2 for w in wins]
    good = [got["rewards"][k] for k in (0, 2, 3)]
    err = max(abs(a - b) for a, b in zip(good, expected))
    print(f"/get_reward with bad items vs offline round robin: max |d| = {err:.2e}")
    assert err <= 5e-6
    assert [got["rewards"][k] for k in (1, 4, 5)] == [0.5, 0.5, 0.5] and got["scores"] == got["rewards"]


def test_huge_string_is_over_context_without_tokenizing(judge):
    app, served_judge = served(judge)
    counting = CountingTokens(served_judge.prompt_tokens)
    served_judge.prompt_tokens = counting
    huge = dict(PAIR, id="huge", response_1="rain " * 3_000_000)  # 15 MB
    with RunningServer(app) as url:
        status, got, _ = post_json(url + "/v1/compare", {"pairs": [PAIR, huge]})
    assert status == 200
    assert "p1" in got["results"][0]
    error = got["results"][1]["error"]
    print(error)
    assert got["results"][1]["id"] == "huge" and "exceeds the model's context of 32768 tokens" in error
    assert f"{sum(len(huge[k]) for k in ('instruction', 'response_1', 'response_2'))} characters" in error
    assert max(counting.longest) < 10_000  # only the small pair's prompts were tokenized


def test_tokenizing_holds_no_global_lock(judge):
    """One request held inside its tokenize call does not stop another request's tokenizing and scoring
    (the service once tokenized every request under one lock: a 15 MB string stalled every client)."""
    app, served_judge = served(judge)
    counting = CountingTokens(served_judge.prompt_tokens, hold_marker="HOLD-ME")
    served_judge.prompt_tokens = counting
    with RunningServer(app) as url:
        held: list = []
        t = threading.Thread(target=lambda: held.append(JudgeClient(url).compare([dict(PAIR, response_1="HOLD-ME")])))
        t.start()
        try:
            assert counting.holding.wait(60)
            other = JudgeClient(url, timeout=120).compare([PAIR])  # answered while the first is held
            assert "p1" in other[0]
            assert not held
        finally:
            counting.release.set()
            t.join(60)
    assert "p1" in held[0][0]


def test_body_is_parsed_off_the_event_loop(judge, monkeypatch):
    import judge_core.serve.app as app_module

    threads: list[str] = []
    real_parse = app_module.parse_body

    def recording_parse(body):
        threads.append(threading.current_thread().name)
        return real_parse(body)

    monkeypatch.setattr(app_module, "parse_body", recording_parse)
    app, _ = served(judge)
    with RunningServer(app) as url:
        status, got, _ = post_json(url + "/v1/compare", {"pairs": [PAIR], "pad": "x" * 15_000_000})
        assert status == 200 and "p1" in got["results"][0]
    print(f"the 15 MB body was parsed on: {threads}")
    # anyio's worker threads, not the server's event-loop thread.
    assert threads and all(name == "AnyIO worker thread" for name in threads)


def test_bad_json_values_are_400_before_any_work(judge):
    gated = GatedBackend(judge.backend)
    app, _ = served(judge, backend=gated)
    bodies = {
        "NaN id": b'{"pairs": [{"id": NaN, "instruction": "i", "response_1": "a", "response_2": "b"}]}',
        "Infinity id": b'{"pairs": [{"id": Infinity, "instruction": "i", "response_1": "a", "response_2": "b"}]}',
        "lone surrogate id": b'{"pairs": [{"id": "\\ud800", "instruction": "i", "response_1": "a", "response_2": "b"}]}',
        "100,000-deep nesting": b'{"pairs": [{"id": ' + b"[" * 100_000 + b"]" * 100_000
                                + b', "instruction": "i", "response_1": "a", "response_2": "b"}]}',
        "5,000-digit integer": b'{"pairs": [{"id": ' + b"7" * 5000 + b', "instruction": "i", "response_1": "a", '
                               b'"response_2": "b"}]}',
    }
    with RunningServer(app) as url:
        before = gated.prompts_run
        for name, body in bodies.items():
            status, got, headers = post(url + "/v1/compare", body)
            print(f"{name}: {status} {got['error'][:100]}")
            assert status == 400 and headers["content-type"] == "application/json", name
            assert got["error"].startswith("request body is not valid JSON"), name
        assert gated.prompts_run == before  # no model work for any of them
        assert metric(url, 'judge_requests_total{endpoint="/v1/compare",status="400"}') == len(bodies)
        # A surrogate *pair* is an ordinary emoji and is served.
        status, got, _ = post(url + "/v1/compare", b'{"pairs": [{"id": "\\ud83d\\ude00", "instruction": "i", '
                                                   b'"response_1": "a", "response_2": "b"}]}')
        assert status == 200 and got["results"][0]["id"] == "\U0001F600"


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(60)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_slow_clients_are_cut_off(judge):
    app, _ = served(judge, ServeLimits(header_timeout_s=0.5, body_timeout_s=0.5))
    with RunningServer(app) as url:
        address = ("127.0.0.1", port_of(url))
        # Half a request head: the server closes the connection, sending nothing.
        with socket.create_connection(address) as sock:
            sock.sendall(b"POST /v1/compare HTTP/1.1\r\nHost: x\r\nContent-Le")
            assert read_until_closed(sock) == b""
        # A connection that sends nothing at all is closed too.
        with socket.create_connection(address) as sock:
            assert read_until_closed(sock) == b""
        # Half a body: 408 with a JSON error, then the connection is closed.
        with socket.create_connection(address) as sock:
            sock.sendall(b"POST /v1/compare HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"pairs\": [")
            answer = read_until_closed(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        print(head.decode().splitlines()[0], body.decode())
        assert head.startswith(b"HTTP/1.1 408") and b"body_timeout_s=0.5" in body and b"11 bytes arrived" in body
        # A keep-alive connection that answered a request and then sends half a second head is closed.
        with socket.create_connection(address) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /hea")
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1
        assert metric(url, 'judge_requests_total{endpoint="/v1/compare",status="408"}') == 1
        # A client that hangs up in the middle of its body is counted as gone (499), not as a 500.
        with socket.create_connection(address) as sock:
            sock.sendall(b"POST /v1/compare HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pairs\"")
        wait_until(lambda: metric(url, 'judge_requests_total{endpoint="/v1/compare",status="499"}') == 1,
                   what="the gone client to be counted")
        assert metric(url, 'judge_requests_total{endpoint="/v1/compare",status="500"}') == 0


def test_queue_full_is_refused_before_tokenizing(judge):
    gated = GatedBackend(judge.backend)
    app, served_judge = served(judge, ServeLimits(max_pairs_per_request=2, max_queue_pairs=2), backend=gated)
    counting = CountingTokens(served_judge.prompt_tokens)
    served_judge.prompt_tokens = counting
    scheduler = app.state.scheduler
    with RunningServer(app) as url:
        gated.gate.clear()
        gated.entered.clear()
        answers: list = []
        clients = [threading.Thread(target=lambda: answers.append(JudgeClient(url).compare([PAIR]))) for _ in range(3)]
        clients[0].start()
        wait_until(gated.entered.is_set, what="the first batch to reach the model")
        for t in clients[1:]:
            t.start()
        wait_until(lambda: scheduler.queued_prompts == 4, what="the queue to hold 2 pairs")
        calls = len(counting.calls)
        with pytest.raises(JudgeServerError) as e:
            JudgeClient(url).compare([PAIR])
        assert e.value.status == 503 and e.value.retry_after == 1.0 and "queue full" in e.value.message
        assert len(counting.calls) == calls  # refused before its prompts were tokenized
        # A client that honours Retry-After gets its answer once the queue has room.
        retrying = threading.Thread(target=lambda: answers.append(JudgeClient(url, retries=120).compare([PAIR])))
        retrying.start()
        wait_until(lambda: app.state.metrics.requests.get(("/v1/compare", 503), 0) >= 2, what="a retried 503")
        gated.gate.set()
        for t in clients + [retrying]:
            t.join(60)
    assert len(answers) == 4 and all("p1" in a[0] for a in answers)


def test_deadline_503_is_early(judge):
    """With work ahead that cannot finish before the request's deadline at the measured rate, the
    request is refused at once (503 + Retry-After) instead of timing out at the client."""
    gated = GatedBackend(judge.backend)
    app, served_judge = served(judge, ServeLimits(request_deadline_s=1e-3), backend=gated)
    counting = CountingTokens(served_judge.prompt_tokens)
    served_judge.prompt_tokens = counting
    scheduler = app.state.scheduler
    with RunningServer(app) as url:
        # Nothing ahead: taken whatever the deadline (a refusal would only bring it back to an empty queue).
        assert "p1" in JudgeClient(url).compare([PAIR])[0]
        assert scheduler.tokens_per_second is not None  # measured on that request
        gated.gate.clear()
        gated.entered.clear()
        blocker: list = []
        t = threading.Thread(target=lambda: blocker.append(JudgeClient(url).compare([PAIR] * 2)))
        t.start()
        wait_until(gated.entered.is_set, what="the blocker's batch to reach the model")
        calls = len(counting.calls)
        status, got, headers = post_json(url + "/v1/compare", {"pairs": [PAIR]})
        print(status, got, headers.get("retry-after"))
        assert status == 503 and "request deadline" in got["error"] and int(headers["retry-after"]) >= 1
        assert len(counting.calls) == calls  # refused before tokenizing
        gated.gate.set()
        t.join(60)
    assert "p1" in blocker[0][0]


def test_openapi_docs_and_error_shapes(judge):
    app, _ = served(judge)
    with RunningServer(app) as url:
        spec = json.loads(urllib.request.urlopen(url + "/openapi.json", timeout=30).read())
        components = spec["components"]["schemas"]
        for path, model in (("/v1/compare", "CompareRequest"), ("/v1/rewards", "RewardsRequest"),
                            ("/get_reward", "OpenRLHFRequest")):
            body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": f"#/components/schemas/{model}"}
            assert model in components
        assert components["CompareRequest"]["properties"]["pairs"]["items"] == {"$ref": "#/components/schemas/ComparePair"}
        assert set(components["ComparePair"]["required"]) == {"instruction", "response_1", "response_2"}
        docs = urllib.request.urlopen(url + "/docs", timeout=30)
        assert docs.status == 200 and b"swagger" in docs.read().lower()
        for method, path, status in (("GET", "/nope", 404), ("GET", "/v1/compare", 405), ("POST", "/health", 405)):
            request = urllib.request.Request(url + path, method=method, data=b"{}" if method == "POST" else None)
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(request, timeout=30)
            assert e.value.code == status and e.value.headers["content-type"] == "application/json"
            body = json.loads(e.value.read())
            assert set(body) == {"error"}, body
        assert metric(url, 'judge_requests_total{endpoint="other",status="404"}') == 1
        assert metric(url, 'judge_requests_total{endpoint="/v1/compare",status="405"}') == 1
