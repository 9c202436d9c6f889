"""`judge-core` entry point: dispatches to one module per subcommand.

Each subcommand module defines HELP (one line), add_arguments(parser) and run(args) -> exit code,
and imports torch / transformers only inside run() so that `--help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "score": "judge_core.cli.score",
    "demo": "judge_core.cli.demo",
    "rank": "judge_core.cli.rank",
    "quantize": "judge_core.cli.quantize",
    "warmup": "judge_core.cli.warmup",
    "serve": "judge_core.cli.serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="judge-core", description="Pairwise logit LLM judge backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
