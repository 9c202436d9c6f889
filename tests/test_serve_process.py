"""`judge-core serve` as a process, for the cases of issue 17 that only a process shows:

- a second Ctrl-C exits promptly and cleanly: open requests get 503 JSON, exit code 130 (no SIGABRT,
  no 500) -> test_second_ctrl_c_answers_503_and_exits_130
- a port already in use is found before the model loads; invalid flags fail before binding, one
  line, no traceback -> test_port_in_use_fails_before_loading, test_bad_flags_fail_before_binding
- a slow client cannot hold SIGTERM's exit for long -> test_sigterm_exits_with_a_half_sent_request_open
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve_server import http_status as status, wait_until  # noqa: E402

# Whole processes, servers, clusters or bench runs: CI runs them (-m slow); README's fast set does not.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(ckpt, port: int, *flags: str) -> subprocess.Popen:
    # Default signal dispositions in the child (a backgrounded test run may have SIGINT ignored).
    return subprocess.Popen([sys.executable, "-m", "judge_core.cli.main", "serve", str(ckpt), "--port", str(port),
                             "--backend", "packed", *flags], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, restore_signals=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def post(url: str, data) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Lines:
    """The child's merged output, read on a thread so that the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc) -> None:
        for line in iter(proc.stdout.readline, ""):
            self.lines.append(line)

    def has(self, needle: str) -> bool:
        return any(needle in line for line in list(self.lines))

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_second_ctrl_c_answers_503_and_exits_130(tiny_text_ckpt):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(tiny_text_ckpt, port, "--token-budget", "300", "--log-level", "info")
    out = Lines(proc)
    try:
        wait_until(lambda: proc.poll() is None and status(url + "/health") == 200, 180, "the server to be healthy")
        pairs = [{"id": i, "instruction": "Write a scene.", "response_1": "rain " * (20 + i % 7),
                  "response_2": "sun " * 25} for i in range(2000)]
        answer: list = []
        sender = threading.Thread(target=lambda: answer.append(post(url + "/v1/compare", {"pairs": pairs})))
        sender.start()
        wait_until(lambda: answer or metric_queue(url) > 0, 120, "the request to queue")
        assert not answer, "the request finished before the first signal: make it larger"
        proc.send_signal(signal.SIGINT)  # first: drain (would answer the request in full)
        wait_until(lambda: out.has("Shutting down") or proc.poll() is not None, 60, "the drain to start")
        assert not answer, "the request finished before the second signal: make it larger"
        proc.send_signal(signal.SIGINT)  # second: stop now
        code = proc.wait(60)
        sender.join(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out.thread.join(10)
    print(out.text[-600:])
    assert code == 130, out.text
    got_status, body = answer[0]
    assert got_status == 503 and "shutting down" in body["error"], body
    assert "Traceback" not in out.text and "Aborted" not in out.text


def metric_queue(url: str) -> float:
    try:
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    except OSError:
        return 0.0
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("judge_queue_prompts ")))


def test_port_in_use_fails_before_loading(tiny_text_ckpt):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = serve(tiny_text_ckpt, port)
        out, _ = proc.communicate(timeout=120)
    print(out)
    assert proc.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in out and "in use" in out
    assert "judge:" not in out and "loading" not in out  # no model was built
    assert "Traceback" not in out


@pytest.mark.parametrize("flags, needle", [
    (["--max-queue-pairs", "0"], "max_queue_pairs must be a positive int, got 0"),
    (["--max-pairs-per-request", "40000"], "max_queue_pairs (32768) must be >= max_pairs_per_request (40000)"),
    (["--backend", "nope"], "--backend 'nope'"),
    (["--body-timeout", "-1"], "body_timeout_s must be a number > 0, got -1.0"),
    (["--max-body-mb", "0"], "--max-body-mb must be > 0"),
    (["--log-level", "loud"], "loud"),
    (["--port", "70000"], "--port 70000: expected 0..65535"),
])
def test_bad_flags_fail_before_binding(tiny_text_ckpt, flags, needle):
    # The port is held by the test: a flag error must be reported, not the port in use.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        args = ["--port", str(port)] + flags if "--port" not in flags else flags
        proc = subprocess.run([sys.executable, "-m", "judge_core.cli.main", "serve", str(tiny_text_ckpt), *args],
                              env=ENV, capture_output=True, text=True, timeout=120)
    print(proc.stderr.strip())
    assert proc.returncode == 2
    assert needle in proc.stderr and "cannot listen" not in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_sigterm_exits_with_a_half_sent_request_open(tiny_text_ckpt):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(tiny_text_ckpt, port, "--body-timeout", "2", "--header-timeout", "2", "--log-level", "warning")
    try:
        wait_until(lambda: proc.poll() is None and status(url + "/health") == 200, 180, "the server to be healthy")
        with socket.create_connection(("127.0.0.1", port)) as half_body, \
                socket.create_connection(("127.0.0.1", port)) as half_head:
            half_body.sendall(b"POST /v1/compare HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"pairs\"")
            half_head.sendall(b"POST /v1/compare HTTP/1.1\r\nHost: x\r\nContent-Le")
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)  # held forever before body and header deadlines existed
            half_body.settimeout(10)
            answer = half_body.recv(65536)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read()
    print(answer.split(b"\r\n")[0], out[-300:])
    assert code == 0, out
    assert answer.startswith(b"HTTP/1.1 408")  # the slow body was answered, not dropped
