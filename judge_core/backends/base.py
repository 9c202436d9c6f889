"""The contract between the runner and a forward backend, and the handle an asynchronous forward returns.

A backend turns a batch of token lists into one row per list: the values of the label tokens at the
list's last position. The label tokens are the judge spec's labels (judge_core/specs), their ids `label_ids`
in label order: two for the card's A/B, five for a 1-5 rubric. A row holds their logits, or (a spec with readout "full")
their full-vocabulary log-probabilities (candidate_head.py). A backend never builds a full [tokens x vocab]
logits tensor, and knows nothing of pairs, specs, prompts or scheduling: the planner decides what goes into
a batch, the runner (runner.py) handles failures and overlaps the host with the device.

Both backends (hf.py, packed.py) derive from `Backend` and implement `candidate_logits_async`; the runner
also takes any object with `candidate_logits` alone (test stand-ins), run sequentially.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Protocol, Sequence

import torch


class LogitsHandle(Protocol):
    def result(self) -> torch.Tensor:
        """float32 [rows, len(label_ids)] on the CPU; waits for the device if it must."""
        ...


def device_scope(device: torch.device):
    """Make `device` the current CUDA device inside (Triton launches on the current device's stream, so a
    model on cuda:1 needs cuda:1 current); a no-op elsewhere."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class ReadyLogits:
    """A handle whose logits are already on the host (CPU backends, or a sequential fallback)."""

    def __init__(self, logits: torch.Tensor):
        self._logits = logits

    def result(self) -> torch.Tensor:
        return self._logits


class PendingLogits:
    """Device logits [n, C] on their way to the host: a non-blocking copy into pinned memory + an event.

    result() waits for that event only (not for the whole device), and returns the CPU float32 tensor.
    On a CPU tensor it degenerates to an immediate result.
    """

    def __init__(self, device_logits: torch.Tensor):
        logits = device_logits.float()
        if logits.device.type != "cuda":
            self._host, self._event = logits.cpu(), None
            return
        # The copy is queued on the logits' device's current stream; the event must be recorded on that
        # stream, not on the current device's (they differ when the model is on cuda:1 and cuda:0 is current).
        stream = torch.cuda.current_stream(logits.device)
        self._host = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
        self._host.copy_(logits, non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record(stream)

    def result(self) -> torch.Tensor:
        if self._event is not None:
            self._event.synchronize()  # an asynchronous device error from this batch surfaces here
            self._event = None
        return self._host


class Backend(abc.ABC):
    """A forward backend. Attributes (set by each backend):

    name: "hf", "packed", ...;  device, dtype: where and in what the model computes;
    max_context: the longest prompt (tokens) the model accepts;
    counts_padding: True when a batch costs rows x longest tokens (padding), False when the sum of lengths;
    shares_prefixes: True when `candidate_logits_async(batch, prefixes=...)` computes shared prefixes once;
    label_ids: the spec's label token ids, in the order of each row's columns.
    """

    name: str
    device: torch.device
    dtype: torch.dtype
    max_context: int
    counts_padding: bool
    shares_prefixes: bool = False
    label_ids: list[int]

    @abc.abstractmethod
    def candidate_logits_async(self, batch: Sequence[Sequence[int]], **options) -> LogitsHandle:
        """Build, copy and launch the batch; return a handle whose `.result()` is the batch's rows: the
        logits of the spec's label tokens (label_ids) at each list's last position.

        batch: token id lists, each non-empty, each at most `max_context` long.
        result: float32 tensor [len(batch), len(label_ids)] on the CPU, rows in batch order.
        On CUDA this returns once the kernels are queued; elsewhere the forward has already run.
        May raise an out-of-memory error (runner.is_oom), here or at `result()`; the runner then splits the batch.
        options: `prefixes=PrefixPolicy` on a backend with `shares_prefixes`.
        """

    def candidate_logits(self, batch: Sequence[Sequence[int]], **options) -> torch.Tensor:
        """The logits of the spec's label tokens (label_ids), waited for: `candidate_logits_async(batch).result()`."""
        return self.candidate_logits_async(batch, **options).result()
