"""`judge-core serve MODEL`: the judge as an HTTP scoring service (docs: judge_core/serve/README.md).

Order of work: every option is checked (a bad one: one line, exit 2, nothing bound or loaded), then
the port is bound (in use: one line, exit 2, no model loaded), then the server answers /health with
503 while the model loads and warms up on the scheduler's thread; a load failure stops the server
with exit code 1. First SIGTERM / Ctrl-C: uvicorn stops accepting and waits for open requests, then
the scheduler finishes what is queued; exit 0. A second one: open requests are answered 503 and the
process exits at once with 128 + the signal (130 for Ctrl-C, 143 for SIGTERM): serve/server.py.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from .model_arg import add_judge_arguments, judge_from_args, usage_error

HELP = ("serve the judge over HTTP: batched /v1/compare, /v1/rewards, /get_reward (OpenRLHF), /v1/score (a pointwise "
        "--spec, SGLang's shape), /metrics")
INSTALL_HINT = "judge-core serve needs fastapi and uvicorn: pip install 'judge_core[serve]'"


def add_arguments(parser) -> None:
    from ..serve.limits import API_KEY_ENV, ServeLimits

    defaults = ServeLimits()
    add_judge_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer KEY' on POST routes (default: ${API_KEY_ENV})")
    parser.add_argument("--max-pairs-per-request", type=int, default=defaults.max_pairs_per_request,
                        help=f"more pairs in one request get 422 (default {defaults.max_pairs_per_request})")
    parser.add_argument("--max-queue-pairs", type=int, default=defaults.max_queue_pairs,
                        help=f"pairs waiting across requests before 503 (default {defaults.max_queue_pairs})")
    parser.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / 2**20,
                        help=f"larger bodies get 413 (default {defaults.max_body_bytes / 2**20:.0f})")
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout_s,
                        help=f"seconds before 504 (default {defaults.request_timeout_s:.0f})")
    parser.add_argument("--request-deadline", type=float, default=defaults.request_deadline_s,
                        help="503 with Retry-After at once when the work ahead cannot finish within this many "
                             f"seconds of the request's arrival; 0 turns it off (default {defaults.request_deadline_s:.0f}: "
                             "OpenRLHF gives up after 180 s)")
    parser.add_argument("--header-timeout", type=float, default=defaults.header_timeout_s,
                        help=f"close a connection whose request head takes longer (default {defaults.header_timeout_s:.0f} s)")
    parser.add_argument("--body-timeout", type=float, default=defaults.body_timeout_s,
                        help=f"408 for a body not received within this (default {defaults.body_timeout_s:.0f} s)")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")


def build_judge(args):
    return judge_from_args(args)


def limits_from_args(args):
    """ServeLimits from the flags; a bad value ends the command with one line (exit 2)."""
    from ..serve.limits import ServeLimits, api_key_from

    try:
        if not args.max_body_mb > 0:
            raise ValueError(f"--max-body-mb must be > 0, got {args.max_body_mb!r}")
        return ServeLimits(max_body_bytes=max(1, int(args.max_body_mb * 2**20)),
                           max_pairs_per_request=args.max_pairs_per_request, max_queue_pairs=args.max_queue_pairs,
                           request_timeout_s=args.request_timeout,
                           request_deadline_s=args.request_deadline or None,
                           header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
                           api_key=api_key_from(args.api_key))
    except ValueError as e:
        raise usage_error(str(e)) from None


def spec_from_args(args):
    """The --spec, checked before anything is bound or loaded (a bad one: one line, exit 2); the routes
    answer by its kind from the first request on, while the model still loads."""
    from ..specs import SpecError, load_spec

    try:
        return load_spec(getattr(args, "spec", None))
    except SpecError as e:
        raise usage_error(str(e)) from None


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads; in use or invalid: one line, exit 2."""
    if not 0 <= port <= 65535:
        raise usage_error(f"--port {port}: expected 0..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise usage_error(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def run(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    from ..serve.app import create_app
    from ..serve.metrics import ServeMetrics
    from ..serve.scheduler import Scheduler
    from ..serve.server import JudgeServer, uvicorn_config
    from .model_arg import check_judge_arguments

    from uvicorn.config import LOG_LEVELS

    check_judge_arguments(args)
    spec = spec_from_args(args)
    args.spec = spec  # the judge is built from this very spec (a file is read once)
    limits = limits_from_args(args)
    if args.log_level not in LOG_LEVELS:
        raise usage_error(f"--log-level {args.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
    metrics = ServeMetrics()
    scheduler = Scheduler(load=lambda: build_judge(args), max_queue_prompts=2 * limits.max_queue_pairs, metrics=metrics)
    app = create_app(scheduler, limits, metrics, spec=spec, model_name=args.model)
    config = uvicorn_config(app, limits, log_level=args.log_level)
    sock = bind(args.host, args.port)  # before the model loads (the scheduler starts with the server)
    server = JudgeServer(config, scheduler)
    scheduler.on_failure = lambda: setattr(server, "should_exit", True)
    host, port = sock.getsockname()[:2]
    auth = "bearer token required" if limits.api_key else "no auth"
    routes = "/v1/score" if not spec.pairwise else "/v1/compare, /v1/rewards"
    print(f"judge-core serve: loading {args.model} (spec {spec.name}: {routes}); listening on http://{host}:{port} "
          f"({auth})", file=sys.stderr)
    # uvicorn re-raises the signal it caught once it has shut down (so a default handler would end the
    # process with -15); a graceful drain is a normal exit here, so the re-raised signal is ignored.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])
    if server.abort_signal is not None:
        print(f"judge-core serve: stopped by a second {signal.Signals(server.abort_signal).name}; open requests "
              f"were answered 503 (exit code {server.exit_code})", file=sys.stderr)
        if scheduler.worker_alive:
            # A forward pass (or a model load) is still running on the scheduler thread: finalizing the
            # interpreter under it aborts the process, so leave without the teardown.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(server.exit_code)
        return server.exit_code
    if scheduler.failed is not None:
        print(f"error: the model failed to load or warm up: {type(scheduler.failed).__name__}: {scheduler.failed}",
              file=sys.stderr)
        return 1
    return 0
