"""The service runs the offline pipeline (runner.stream_batches): while the device runs a window's last
batch, the worker takes the next window from the queue and launches it, and the numbers are those of
the sequential path."""

from __future__ import annotations

import threading

import torch

from judge_core.api import Judge
from judge_core.runner import run_batches
from judge_core.serve.scheduler import Scheduler


class Recorder:
    """The real backend, its launches and collections logged; launches wait for `gate`."""

    def __init__(self, inner):
        self.inner, self.events, self.gate = inner, [], threading.Event()
        self.gate.set()
        self.waiting = threading.Event()  # a launch is held at the gate

    def __getattr__(self, name):  # device, counts_padding, max_context, shares_prefixes, ...
        return getattr(self.inner, name)

    def candidate_logits_async(self, batch, **kw):
        self.waiting.set()
        assert self.gate.wait(60), "test gate never opened"
        k = sum(e[0] == "submit" for e in self.events)
        self.events.append(("submit", k))
        handle, events = self.inner.candidate_logits_async(batch, **kw), self.events

        class Logged:
            def result(self):
                events.append(("result", k))
                return handle.result()

        return Logged()


def test_service_overlaps_windows_and_matches_the_sequential_path(tiny_text_ckpt):
    judge = Judge.from_pretrained(tiny_text_ckpt, backend="packed", device="cpu", dtype="fp32")
    backend = Recorder(judge.backend)
    served = Judge(backend, judge.tokenizer, token_budget=400)  # a window holds a few prompts
    g = torch.Generator().manual_seed(11)
    requests = [[torch.randint(0, 248000, (int(n),), generator=g).tolist()
                 for n in torch.randint(40, 250, (4,), generator=g)] for _ in range(5)]

    scheduler = Scheduler(served, warmup=False).start()
    assert scheduler.ready.wait(60)
    backend.gate.clear()
    jobs = [scheduler.submit(requests[0])]
    assert backend.waiting.wait(30)  # the worker took the first window and holds its launch at the gate
    jobs += [scheduler.submit(r) for r in requests[1:]]  # queued behind it: more windows to take
    backend.gate.set()
    for job in jobs:
        assert job.finished.wait(120) and not job.errors
    scheduler.stop(timeout=30)

    ev = backend.events
    launches = sum(e[0] == "submit" for e in ev)
    ahead = [k for k in range(launches - 1) if ev.index(("submit", k + 1)) < ev.index(("result", k))]
    print(f"{launches} batches served; the next batch was launched before this one was waited for in {len(ahead)}")
    assert launches >= 4 and len(ahead) >= launches - 2  # all but the idle gaps overlapped

    # The sequential path, one prompt per batch: prompts do not depend on their batch mates.
    flat = [s for r in requests for s in r]
    reference, errors, _ = run_batches(judge.backend, flat, [[i] for i in range(len(flat))], overlap=False)
    got = torch.tensor([logits for job in jobs for logits in job.logits])
    err = (got - reference).abs().max().item()
    print(f"served (overlapped, merged windows) vs sequential single prompts: max |d logit| = {err:.2e}")
    assert not errors and err < 1e-5
