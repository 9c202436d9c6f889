"""uvicorn, as the service runs it: header and body deadlines, and the second stop signal.

- uvicorn (0.55, h11) has no deadline for a request's headers: a client that connects and sends half
  a request line is held forever. `HeaderDeadlineProtocol` closes a connection whose request head is
  not complete `header_timeout_s` after it started to arrive (or after the connection opened). The
  body's deadline is the app's (`body_timeout_s`, 408).
- The first SIGTERM / Ctrl-C drains: stop accepting, answer every request in flight, finish the
  queue, exit 0. uvicorn's answer to a second Ctrl-C is to stop waiting and cancel the handlers
  (answering them 500) while the scheduler thread may be inside a forward pass, and the interpreter
  then aborts (SIGABRT) finalizing under it. Here a second SIGINT or SIGTERM aborts the scheduler
  (every open request is answered 503 with Retry-After at once), waits at most `ABORT_GRACE_S` for
  those answers and the running batch, and exits with 128 + the signal number (130 for Ctrl-C, 143
  for SIGTERM), without the interpreter's teardown if a forward pass is still running.
"""

from __future__ import annotations

import asyncio
import signal

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import ServeLimits
from .scheduler import ABORT_GRACE_S
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class HeaderDeadlineProtocol(H11Protocol):
    """h11 protocol that closes a connection whose request head takes longer than `header_timeout_s`."""

    header_timeout_s = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = None
        self._head_for = None
        self._arm_head_timer()

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_for = self.cycle  # the head is complete once a new cycle replaces this one
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_head():
            self._arm_head_timer()
        super().data_received(data)
        if self.cycle is not self._head_for:
            self._disarm_head_timer()

    def connection_lost(self, exc) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.logger.info("closing a connection whose request head did not arrive within %.0f s",
                             self.header_timeout_s)
            self.transport.close()


def protocol_for(limits: ServeLimits) -> type[H11Protocol]:
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": limits.header_timeout_s})


def uvicorn_config(app, limits: ServeLimits, **kwargs) -> uvicorn.Config:
    """uvicorn's Config with the service's protocol (h11 + header deadline); kwargs: host, port, log_level..."""
    kwargs.setdefault("timeout_graceful_shutdown", None)  # a drain waits for every open request
    return uvicorn.Config(app, http=protocol_for(limits), **kwargs)


class JudgeServer(uvicorn.Server):
    """uvicorn's Server with the second-signal rule of the module docstring. `abort_signal` is the
    signal that aborted (None after a normal drain)."""

    def __init__(self, config: uvicorn.Config, scheduler):
        super().__init__(config)
        self.scheduler = scheduler
        self.abort_signal: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame) -> None:
        if self.should_exit and self.abort_signal is None and sig in STOP_SIGNALS:
            self.abort_signal = sig
            # Run in the loop, not inside the signal handler: the handler may interrupt the loop
            # thread in the middle of a scheduler call.
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._abort)
                return
        super().handle_exit(sig, frame)

    def _abort(self) -> None:
        self.scheduler.abort()  # open requests wake up and answer 503
        # Whatever has not answered within the grace period is dropped.
        asyncio.get_running_loop().call_later(ABORT_GRACE_S, setattr, self, "force_exit", True)

    @property
    def exit_code(self) -> int:
        return 0 if self.abort_signal is None else 128 + int(self.abort_signal)
