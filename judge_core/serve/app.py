"""HTTP routes (FastAPI): /v1/compare, /v1/rewards, /get_reward (OpenRLHF), /v1/score (a pointwise spec, SGLang's
shape: score_route.py), /health, /metrics, /docs.

Every scoring route: read the body (size-limited, within body_timeout_s) -> parse and validate it on a
worker thread (requests.py; a 15 MB body must not freeze /health) -> admission (scheduler.admit:
queue room and the deadline, before any work) -> prompts and token ids on a worker thread
(prepare.py, no global lock) -> submit to the one Scheduler -> wait for the job, the client's
disconnect or the request timeout, whichever comes first -> JSON.
Errors are `{"error": "<message>"}` with the status, for every route and for unknown paths and
methods too: 400 body not strict JSON, 401 auth, 404/405 no such route, 408 body too slow, 413 body
too large, 422 a field or the pairs-per-request limit, 500 a bug, 503 queue full / deadline / not
ready / shutting down (with Retry-After), 504 timeout. Every response is counted in /metrics.
400 also answers a request the served judge cannot do: /v1/score under a pairwise spec, the pair and reward
routes under a pointwise spec (the served spec's kind decides; the message names the route to use).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from contextlib import asynccontextmanager
from typing import Any, Callable

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from . import schemas
from .groups import GroupBarrier
from .limits import ServeLimits
from .metrics import ServeMetrics
from ..prepare import finish_pairs, prepare_pairs
from .requests import RequestError, check_pair_count, compare_pairs, openrlhf_items, parse_body, reward_groups
from ..rewards.modes import SampleReward
from .rewards import (RewardGroup, count_matchups, expand_groups, group_rewards, openrlhf_body, openrlhf_groups,
                      rewards_body)
from .rl_routes import RLRoutes, register_rl_routes, rl_options
from .score_route import check_labels, score_body, score_request
from .scheduler import QueueFull, Scheduler

log = logging.getLogger("judge_core.serve")
ROUTES = ("/v1/compare", "/v1/rewards", "/get_reward", "/v1/group_reward", "/slime_reward", "/v1/score", "/health",
          "/metrics", "/docs", "/openapi.json")


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


def retry_after(seconds: float | None, limits: ServeLimits) -> dict:
    value = limits.retry_after_s if seconds is None else max(1, math.ceil(seconds))
    return {"Retry-After": str(value)}


def create_app(scheduler: Scheduler, limits: ServeLimits | None = None, metrics: ServeMetrics | None = None,
               barrier: GroupBarrier | None = None, spec=None, model_name: str | None = None) -> FastAPI:
    """The app; its lifespan starts the scheduler (if not started) and drains it on shutdown.
    barrier: the group barrier of the RL routes (rl_routes.py); default GroupBarrier().
    spec: the served judge's spec (a JudgeSpec), known before the model loads (`judge-core serve --spec`);
    None: the loaded judge's. model_name: what /v1/score answers in `model` (default: the checkpoint path)."""
    limits = limits or ServeLimits()
    metrics = metrics or scheduler.metrics or ServeMetrics()
    if scheduler.metrics is None:
        scheduler.metrics = metrics

    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        yield
        # uvicorn has stopped accepting and waited for open requests; finish whatever is queued
        # (after an abort, scheduler.stop waits only briefly for the batch still running).
        await anyio.to_thread.run_sync(scheduler.stop)

    app = FastAPI(title="judge_core scoring service", lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  description="Pairwise logit judge as a batching service. Errors are {\"error\": message}.")
    app.state.scheduler = scheduler
    app.state.metrics = metrics
    app.state.limits = limits

    def endpoint_label(request: Request) -> str:
        return request.url.path if request.url.path in ROUTES else "other"  # bounded label values

    def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        response = error_response(e.status_code, str(e.detail), getattr(e, "headers", None))
        metrics.request(endpoint_label(request), response.status_code, 0.0)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> Response:
        response = error_response(422, str(e.errors()))
        metrics.request(endpoint_label(request), 422, 0.0)
        return response

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        metrics.request(endpoint_label(request), 500, 0.0)
        return error_response(500, f"internal error: {type(e).__name__}: {e}")

    def check_auth(request: Request) -> None:
        if limits.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), limits.api_key.encode()):
            raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                               {"WWW-Authenticate": "Bearer"})

    async def read_body(request: Request, started: float) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"request body of {int(declared)} bytes exceeds max_body_bytes="
                                    f"{limits.max_body_bytes}", {"Connection": "close"})
        chunks, size = [], 0
        try:
            async with asyncio.timeout(limits.body_timeout_s - (time.perf_counter() - started)):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_body_bytes:
                        raise RequestError(413, f"request body exceeds max_body_bytes={limits.max_body_bytes}",
                                           {"Connection": "close"})
                    chunks.append(chunk)
        except ClientDisconnect:
            raise ClientGone() from None
        except TimeoutError:
            raise RequestError(408, f"request body not received within body_timeout_s={limits.body_timeout_s} "
                                    f"({size} bytes arrived)", {"Connection": "close"}) from None
        return b"".join(chunks)

    async def read_input(request: Request, started: float, validate: Callable[[Any], Any]) -> Any:
        """The body, parsed and validated on a worker thread (json.loads of megabytes holds the GIL)."""
        body = await read_body(request, started)
        return await anyio.to_thread.run_sync(lambda: validate(parse_body(body)))

    async def wait_disconnect(request: Request) -> None:
        # The body is read: the next ASGI message is the disconnect, whenever it comes.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    def served_spec():
        """The served judge's spec; None while the model loads and no spec was given (then 503 follows)."""
        return spec if spec is not None else getattr(scheduler.judge, "spec", None)

    def require(kind: str, route: str) -> None:
        """400 unless the served spec is `kind` ("pairwise": either pairwise kind; "pointwise")."""
        served = served_spec()
        if served is None or served.pairwise == (kind == "pairwise"):
            return
        if kind == "pairwise":
            raise RequestError(400, f"{route} judges pairs, and the served spec {served.name!r} is pointwise: "
                                    "send its items to /v1/score")
        raise RequestError(400, f"/v1/score reads a pointwise spec, and the served spec {served.name!r} is "
                                f"{served.kind}: judge pairs with /v1/compare (rewards: /v1/rewards)")

    def deadline_left(started: float) -> float | None:
        if limits.request_deadline_s is None:
            return None
        return limits.request_deadline_s - (time.perf_counter() - started)

    async def score(request: Request, pairs: list, started: float):
        """-> (PairScores in input order, prompt tokens); raises ClientGone or RequestError (503, 504)."""
        if scheduler.failed is not None or not scheduler.ready.is_set():
            raise RequestError(503, "the model is still loading or warming up", retry_after(None, limits))
        try:  # admission before any work: room in the queue, and time before the client's deadline
            # prompts per item: 2 for the card's dual pass, 1 for a pointwise spec
            passes = getattr(getattr(scheduler.judge, "spec", None), "passes", 2)
            ticket = scheduler.admit(passes * len(pairs), deadline_left(started))
        except QueueFull as e:
            raise RequestError(503, str(e), retry_after(e.retry_after, limits)) from None
        try:
            prepared = await anyio.to_thread.run_sync(prepare_pairs, scheduler.judge, pairs)
            loop = asyncio.get_running_loop()
            done = loop.create_future()

            def on_done(job) -> None:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

            job = scheduler.submit(prepared.sequences, on_done, ticket, deadline_left(started))
        except QueueFull as e:
            raise RequestError(503, str(e), retry_after(e.retry_after, limits)) from None
        finally:
            scheduler.release(ticket)
        # request None: work on behalf of several requests (a group barrier), never cancelled by one client.
        gone = asyncio.ensure_future(wait_disconnect(request)) if request is not None else loop.create_future()
        try:
            left = limits.request_timeout_s - (time.perf_counter() - started)
            finished, _ = await asyncio.wait({done, gone}, timeout=max(left, 0.0),
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if job.aborted:
            raise RequestError(503, "the server is shutting down now (a second stop signal): retry",
                               {**retry_after(None, limits), "Connection": "close"})
        if done not in finished:
            scheduler.cancel(job)  # nobody will read these prompts: they leave the queue now
            metrics.request_cancelled()
            if gone in finished:
                raise ClientGone()
            raise RequestError(504, f"request not answered within request_timeout_s={limits.request_timeout_s}")
        return finish_pairs(prepared, job.logits, job.errors), prepared.prompt_tokens

    async def handle(endpoint: str, request: Request, validate: Callable[[Any], Any], answer) -> Response:
        """Auth, body, validation off the loop, the route's work, errors as JSON, and the request metrics."""
        started = time.perf_counter()
        ok = failed = 0
        try:
            check_auth(request)
            inputs = await read_input(request, started, validate)
            payload, ok, failed = await answer(request, inputs, started)
            response: Response = JSONResponse(payload)
        except RequestError as e:
            response = error_response(e.status, e.message, e.headers)
        except ClientGone:
            response = Response(status_code=499)  # never delivered; nginx's code for "client closed"
        except Exception as e:  # noqa: BLE001 - a bug answers 500 JSON, counted, and the server goes on
            log.exception("internal error on %s", endpoint)
            response = error_response(500, f"internal error: {type(e).__name__}: {e}")
        metrics.request(endpoint, response.status_code, time.perf_counter() - started, ok, failed)
        return response

    def tally(scores) -> tuple[int, int]:
        failed = sum(s.error is not None for s in scores)
        return len(scores) - failed, failed

    async def run_groups(request: Request, groups: list[RewardGroup], started: float):
        pairs, matchups = expand_groups(groups)
        scores, tokens = await score(request, pairs, started)
        return matchups, scores, tokens

    @app.post("/v1/compare", openapi_extra=schemas.request_body(schemas.CompareRequest),
              responses={200: {"model": schemas.CompareResponse}, **schemas.error_responses(400, 408, 413, 422, 503)})
    async def compare(request: Request) -> Response:
        """Judge pairs; results in request order, a bad pair gets an error entry."""
        async def answer(request, items, started):
            scores, tokens = await score(request, items, started)
            results = []
            for item, s in zip(items, scores):
                ident = {"id": item["id"]} if isinstance(item, dict) and "id" in item else {}
                results.append({**ident, **s.to_dict()})
            return {"results": results, "usage": {"prompt_tokens": tokens}}, *tally(scores)

        return await handle("/v1/compare", request, lambda data: compare_pairs(guard(data, "/v1/compare"), limits),
                            answer)

    @app.post("/v1/rewards", openapi_extra=schemas.request_body(schemas.RewardsRequest),
              responses={200: {"model": schemas.RewardsResponse}, **schemas.error_responses(400, 408, 413, 422, 503)})
    async def rewards(request: Request) -> Response:
        """Group rewards in a mode (judge_core.rewards): round robin inside each group, or against its reference."""
        async def answer(request, groups, started):
            matchups, scores, tokens = await run_groups(request, groups, started)
            return {**rewards_body(groups, matchups, scores), "usage": {"prompt_tokens": tokens}}, *tally(scores)

        return await handle("/v1/rewards", request, lambda data: reward_groups(guard(data, "/v1/rewards"), limits),
                            answer)

    @app.post("/get_reward", openapi_extra=schemas.request_body(schemas.OpenRLHFRequest),
              responses={200: {"model": schemas.OpenRLHFResponse}, **schemas.error_responses(400, 408, 413, 422, 503)})
    async def get_reward(request: Request) -> Response:
        """OpenRLHF's remote reward model (`--reward.remote_url http://HOST:PORT/get_reward`); `?mode=` and
        `?group_size=` pick the reward mode and the group barrier (rl_routes.py). A bad item gets the neutral
        reward with `judge_failed` 1.0 and its reason in `errors`, never a 422 for the whole batch."""
        async def answer(request, items, started):
            options = rl_options(request.query_params)
            if options.group_size is not None:  # per-sample requests: the group barrier
                body = await rl.openrlhf_grouped(request, items, options)
                return body, len(items) - len(body["errors"]), len(body["errors"])
            try:
                groups, where = openrlhf_groups(items, options.mode)
            except ValueError as e:
                raise RequestError(422, str(e)) from None
            check_pair_count(sum(count_matchups(g) for g in groups), "'query'", limits)
            matchups, scores, _ = await run_groups(request, groups, started)
            samples = group_rewards(groups, matchups, scores)
            flat = [SampleReward.failed(items.errors.get(i, "not scored")) if w is None else samples[w[0]][w[1]]
                    for i, w in enumerate(where)]
            ok, bad = tally(scores)
            return openrlhf_body(flat), ok, bad + len(items.errors)

        return await handle("/get_reward", request, lambda data: openrlhf_items(guard(data, "/get_reward"), limits),
                            answer)

    @app.post("/v1/score", openapi_extra=schemas.request_body(schemas.ScoreRequest),
              responses={200: {"model": schemas.ScoreResponse}, **schemas.error_responses(400, 408, 413, 422, 503)})
    async def score_items(request: Request) -> Response:
        """A pointwise spec's verdicts in SGLang's /v1/score shape (score_route.py); a bad item gets a null
        `scores` row and an `error` result, never a failed request."""
        async def answer(request, body, started):
            judge = scheduler.judge
            if judge is None or not scheduler.ready.is_set():
                raise RequestError(503, "the model is still loading or warming up", retry_after(None, limits))
            require("pointwise", "/v1/score")  # the loaded judge's spec, when none was given up front
            check_labels(body, judge)
            runnable = body.runnable()
            scores, tokens = await score(request, [body.items[i] for i in runnable], started)
            by_item = dict(zip(runnable, scores))
            name = model_name or str(getattr(judge, "path", None) or "judge_core")
            ok, failed = tally(scores)
            return score_body(body, by_item, judge, name, tokens), ok, failed + len(body.errors)

        def validate(data):
            require("pointwise", "/v1/score")
            return score_request(data, limits)

        return await handle("/v1/score", request, validate, answer)

    def guard(data, route: str):
        require("pairwise", route)
        return data

    rl = RLRoutes(score, limits, barrier or GroupBarrier(), guard=guard)
    app.state.barrier = rl.barrier
    register_rl_routes(app, handle, rl)

    @app.get("/health")
    async def health() -> Response:
        if scheduler.failed is not None:
            return JSONResponse({"status": "failed", "error": f"{type(scheduler.failed).__name__}: "
                                                              f"{scheduler.failed}"}, status_code=500)
        if not scheduler.ready.is_set():
            return JSONResponse({"status": "warming up"}, status_code=503, headers=retry_after(None, limits))
        return JSONResponse({"status": "ok", "queue_prompts": scheduler.queued_prompts,
                             "token_budget": scheduler.judge.token_budget})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version="1", description=app.description, routes=app.routes)
            spec.setdefault("components", {}).setdefault("schemas", {}).update(schemas.component_schemas())
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi
    return app
