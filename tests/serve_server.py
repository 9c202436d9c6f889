"""Test helpers for `judge-core serve`: a uvicorn server on a free loopback port in a thread, and
backends that hold or fail batches on demand (to reach queue-full, timeout, disconnect, OOM)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import torch


class RunningServer:
    """`with RunningServer(app) as url:` serves `app` on 127.0.0.1:<free port> until the block ends."""

    def __init__(self, app, wait_ready: bool = True):
        from judge_core.serve.server import JudgeServer, uvicorn_config

        self.wait_ready = wait_ready
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # The service's own uvicorn setup (header deadline protocol), as `judge-core serve` runs it.
        self.server = JudgeServer(uvicorn_config(app, app.state.limits, log_level="warning",
                                                 timeout_graceful_shutdown=5), app.state.scheduler)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        if self.wait_ready:  # /health says 200 once the model is warm
            wait_until(lambda: http_status(self.url + "/health") == 200, 60, "/health 200")
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def serve_app(judge, limits=None, backend=None, **judge_kwargs):
    """(app, served Judge): a fresh Judge over `judge`'s model (or `backend`), served as create_app does."""
    from judge_core.api import Judge
    from judge_core.serve.app import create_app
    from judge_core.serve.limits import ServeLimits
    from judge_core.serve.metrics import ServeMetrics
    from judge_core.serve.scheduler import Scheduler

    served = Judge(backend or judge.backend, judge.tokenizer, **judge_kwargs)
    limits = limits or ServeLimits()
    metrics = ServeMetrics()
    scheduler = Scheduler(served, max_queue_prompts=2 * limits.max_queue_pairs, metrics=metrics)
    return create_app(scheduler, limits, metrics), served


class GatedBackend:
    """Wraps a real backend: every forward waits for `gate` to open; counts the prompts it ran.

    oom_above: raise torch.OutOfMemoryError for any batch with more prompts than this (None: never).
    """

    def __init__(self, inner, oom_above: int | None = None):
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set once a forward is waiting at (or past) the gate
        self.oom_above = oom_above
        self.prompts_run = 0
        self.batch_sizes: list[int] = []
        self.device = inner.device
        self.counts_padding = inner.counts_padding
        self.max_context = inner.max_context

    def candidate_logits(self, batch):
        self.entered.set()
        if not self.gate.wait(60):
            raise RuntimeError("test gate never opened")
        if self.oom_above is not None and len(batch) > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by the test)")
        self.prompts_run += len(batch)
        self.batch_sizes.append(len(batch))
        return self.inner.candidate_logits(batch)


def http_status(url: str) -> int:
    """The GET status of url; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def post(url: str, body: bytes, headers: dict | None = None, timeout: float = 120) -> tuple[int, dict, dict]:
    """POST a raw body -> (status, JSON answer, headers), error statuses included."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def post_json(url: str, data, headers: dict | None = None) -> tuple[int, dict, dict]:
    return post(url, json.dumps(data).encode(), headers)


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
