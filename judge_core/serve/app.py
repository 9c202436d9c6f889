"""HTTP routes (FastAPI): /v1/compare, /v1/rewards, /get_reward (OpenRLHF), /health, /metrics.

Every scoring route: read the body (size-limited) -> validate (requests.py) -> prompts and token ids
on a worker thread (prepare.py) -> submit to the one Scheduler -> wait for the job, the client's
disconnect or the request timeout, whichever comes first -> JSON.
Errors are `{"error": "<message>"}` with the status: 400 body not JSON, 401 auth, 413 body too
large, 422 a field or the pairs-per-request limit, 503 queue full / not ready / shutting down
(with Retry-After), 504 timeout.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .groups import GroupBarrier
from .limits import ServeLimits
from .metrics import ServeMetrics
from ..prepare import finish_pairs, prepare_pairs
from .requests import RequestError, check_pair_count, compare_pairs, openrlhf_items, parse_body, reward_groups
from .rewards import RewardGroup, count_matchups, expand_groups, group_rewards, openrlhf_body, openrlhf_groups, rewards_body
from .rl_routes import RLRoutes, register_rl_routes, rl_options
from .scheduler import QueueFull, Scheduler


# The fast tokenizer is a Rust object shared by every request thread; one call at a time keeps it
# safe (each call already runs a whole request's prompts in one batch).
TOKENIZER_LOCK = threading.Lock()


def locked_tokenize(judge):
    def tokenize(texts: list[str]) -> list[list[int]]:
        with TOKENIZER_LOCK:
            return judge.tokenize(texts)

    return tokenize


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


def create_app(scheduler: Scheduler, limits: ServeLimits | None = None, metrics: ServeMetrics | None = None,
               barrier: GroupBarrier | None = None) -> FastAPI:
    """The app; its lifespan starts the scheduler (if not started) and drains it on shutdown.
    barrier: the group barrier of the RL routes (rl_routes.py); default GroupBarrier()."""
    limits = limits or ServeLimits()
    metrics = metrics or scheduler.metrics or ServeMetrics()
    if scheduler.metrics is None:
        scheduler.metrics = metrics

    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        yield
        # uvicorn has stopped accepting and waited for open requests; finish whatever is queued.
        await anyio.to_thread.run_sync(scheduler.stop)

    app = FastAPI(title="judge_core scoring service", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.scheduler = scheduler
    app.state.metrics = metrics
    app.state.limits = limits

    def check_auth(request: Request) -> None:
        if limits.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), limits.api_key.encode()):
            raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                               {"WWW-Authenticate": "Bearer"})

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"request body of {int(declared)} bytes exceeds max_body_bytes="
                                    f"{limits.max_body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise RequestError(413, f"request body exceeds max_body_bytes={limits.max_body_bytes}")
            chunks.append(chunk)
        return parse_body(b"".join(chunks))

    async def wait_disconnect(request: Request) -> None:
        # The body is read: the next ASGI message is the disconnect, whenever it comes.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def score(request: Request, pairs: list, started: float):
        """-> (PairScores in input order, prompt tokens); raises ClientGone or RequestError (503, 504)."""
        if scheduler.failed is not None or not scheduler.ready.is_set():
            raise RequestError(503, "the model is still loading or warming up",
                               {"Retry-After": str(limits.retry_after_s)})
        prepared = await anyio.to_thread.run_sync(prepare_pairs, scheduler.judge, pairs, locked_tokenize(scheduler.judge))
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_done(job) -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        try:
            job = scheduler.submit(prepared.sequences, on_done)
        except QueueFull as e:
            raise RequestError(503, str(e), {"Retry-After": str(limits.retry_after_s)}) from None
        # request None: work on behalf of several requests (a group barrier), never cancelled by one client.
        gone = asyncio.ensure_future(wait_disconnect(request)) if request is not None else loop.create_future()
        try:
            left = limits.request_timeout_s - (time.perf_counter() - started)
            finished, _ = await asyncio.wait({done, gone}, timeout=max(left, 0.0),
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if done not in finished:
            scheduler.cancel(job)  # nobody will read these prompts: they leave the queue now
            metrics.request_cancelled()
            if gone in finished:
                raise ClientGone()
            raise RequestError(504, f"request not answered within request_timeout_s={limits.request_timeout_s}")
        return finish_pairs(prepared, job.logits, job.errors), prepared.prompt_tokens

    async def handle(endpoint: str, request: Request, body_to_answer) -> Response:
        """Auth, body, the route's work, errors as JSON, and the request metrics."""
        started = time.perf_counter()
        ok = failed = 0
        try:
            check_auth(request)
            data = await read_json(request)
            payload, ok, failed = await body_to_answer(request, data, started)
            response: Response = JSONResponse(payload)
        except RequestError as e:
            response = JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)
        except ClientGone:
            response = Response(status_code=499)  # never delivered; nginx's code for "client closed"
        metrics.request(endpoint, response.status_code, time.perf_counter() - started, ok, failed)
        return response

    def tally(scores) -> tuple[int, int]:
        failed = sum(s.error is not None for s in scores)
        return len(scores) - failed, failed

    async def run_groups(request: Request, groups: list[RewardGroup], started: float):
        pairs, matchups = expand_groups(groups)
        scores, tokens = await score(request, pairs, started)
        return matchups, scores, tokens

    @app.post("/v1/compare")
    async def compare(request: Request) -> Response:
        async def answer(request, data, started):
            items = compare_pairs(data, limits)
            scores, tokens = await score(request, items, started)
            results = []
            for item, s in zip(items, scores):
                ident = {"id": item["id"]} if isinstance(item, dict) and "id" in item else {}
                results.append({**ident, **s.to_dict()})
            return {"results": results, "usage": {"prompt_tokens": tokens}}, *tally(scores)

        return await handle("/v1/compare", request, answer)

    @app.post("/v1/rewards")
    async def rewards(request: Request) -> Response:
        async def answer(request, data, started):
            groups = reward_groups(data, limits)
            matchups, scores, tokens = await run_groups(request, groups, started)
            return {**rewards_body(groups, matchups, scores), "usage": {"prompt_tokens": tokens}}, *tally(scores)

        return await handle("/v1/rewards", request, answer)

    @app.post("/get_reward")
    async def get_reward(request: Request) -> Response:
        async def answer(request, data, started):
            options = rl_options(request.query_params)
            if options.group_size is not None:  # per-sample requests: the group barrier (rl_routes.py)
                return await rl.openrlhf_grouped(request, data, options), 1, 0
            queries, prompts, labels = openrlhf_items(data, limits)
            mode = options.mode
            try:
                groups, where = openrlhf_groups(queries, prompts, labels, mode)
            except ValueError as e:
                raise RequestError(422, str(e)) from None
            check_pair_count(sum(count_matchups(g) for g in groups), "'query'", limits)
            matchups, scores, _ = await run_groups(request, groups, started)
            samples = group_rewards(groups, matchups, scores)
            return openrlhf_body([samples[g][r] for g, r in where]), *tally(scores)

        return await handle("/get_reward", request, answer)

    rl = RLRoutes(score, limits, barrier or GroupBarrier())
    app.state.barrier = rl.barrier
    register_rl_routes(app, handle, rl)

    @app.get("/health")
    async def health() -> Response:
        if scheduler.failed is not None:
            return JSONResponse({"status": "failed", "error": f"{type(scheduler.failed).__name__}: "
                                                              f"{scheduler.failed}"}, status_code=500)
        if not scheduler.ready.is_set():
            return JSONResponse({"status": "warming up"}, status_code=503,
                                headers={"Retry-After": str(limits.retry_after_s)})
        return JSONResponse({"status": "ok", "queue_prompts": scheduler.queued_prompts,
                             "token_budget": scheduler.judge.token_budget})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    return app
