"""`judge-core serve` as a process: SIGTERM stops accepting, finishes the request in flight, exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from judge_core.client import JudgeClient, JudgeServerError  # noqa: E402

from serve_server import wait_until  # noqa: E402

# Whole processes, servers, clusters or bench runs: CI runs them (-m slow); README's fast set does not.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queued_prompts(url: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("judge_queue_prompts ")))


def healthy(client: JudgeClient) -> bool:
    try:
        return client.health()["status"] == "ok"
    except JudgeServerError:
        return False


def test_sigterm_finishes_in_flight_request_and_exits_0(tiny_text_ckpt):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "judge_core.cli.main", "serve", str(tiny_text_ckpt), "--port",
                             str(port), "--backend", "packed", "--token-budget", "300", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = JudgeClient(url, timeout=120)
        wait_until(lambda: proc.poll() is None and healthy(client), 120, "the server to be healthy")
        pairs = [{"id": i, "instruction": "Write a scene.", "response_1": "rain " * (20 + i), "response_2": "sun " * 25}
                 for i in range(8)]
        answer: list = []
        sender = threading.Thread(target=lambda: answer.append(client.compare(pairs)))
        sender.start()
        wait_until(lambda: answer or queued_prompts(url) > 0, 60, "the request to be queued")
        assert not answer, "the request finished before SIGTERM: make it larger"
        proc.send_signal(signal.SIGTERM)
        sender.join(120)
        assert proc.wait(120) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [r["id"] for r in answer[0]] == list(range(8))
    assert all("p1" in r for r in answer[0])
    with pytest.raises(JudgeServerError) as e:
        client.health()
    assert e.value.status == 0  # nobody listens any more
