"""`judge-core serve MODEL`: the judge as an HTTP scoring service (docs: docs_serve_section.md).

The model loads and warms up on the scheduler's thread while the server already answers /health
with 503; a load failure stops the server with exit code 1. SIGTERM / Ctrl-C: uvicorn stops
accepting and waits for open requests, then the scheduler finishes what is queued; exit 0.
"""

from __future__ import annotations

import signal
import sys

from .model_arg import add_judge_arguments, judge_from_args

HELP = "serve the judge over HTTP: batched /v1/compare, /v1/rewards, /get_reward (OpenRLHF), /metrics"
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
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")


def build_judge(args):
    return judge_from_args(args)


def run(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    from ..serve.app import create_app
    from ..serve.limits import ServeLimits, api_key_from
    from ..serve.metrics import ServeMetrics
    from ..serve.scheduler import Scheduler

    limits = ServeLimits(max_body_bytes=int(args.max_body_mb * 2**20), max_pairs_per_request=args.max_pairs_per_request,
                         max_queue_pairs=args.max_queue_pairs, request_timeout_s=args.request_timeout,
                         api_key=api_key_from(args.api_key))
    metrics = ServeMetrics()
    scheduler = Scheduler(load=lambda: build_judge(args), max_queue_prompts=2 * limits.max_queue_pairs, metrics=metrics)
    config = uvicorn.Config(create_app(scheduler, limits, metrics), host=args.host, port=args.port,
                            log_level=args.log_level, timeout_graceful_shutdown=None)
    server = uvicorn.Server(config)
    scheduler.on_failure = lambda: setattr(server, "should_exit", True)
    auth = "bearer token required" if limits.api_key else "no auth"
    print(f"judge-core serve: loading {args.model}; listening on http://{args.host}:{args.port} ({auth})",
          file=sys.stderr)
    # uvicorn re-raises the signal it caught once it has shut down (so a default handler would end the
    # process with -15); a graceful drain is a normal exit here, so the re-raised signal is ignored.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run()
    if scheduler.failed is not None:
        print(f"error: the model failed to load or warm up: {type(scheduler.failed).__name__}: {scheduler.failed}",
              file=sys.stderr)
        return 1
    return 0
