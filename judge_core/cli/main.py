"""`judge-core` entry point: dispatches to one module per subcommand.

Each subcommand module defines HELP (one line), add_arguments(parser) and run(args) -> exit code, and
may define EPILOG (text shown after the options by --help); it imports torch / transformers only
inside run() so that `--help` stays instant.
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help as written (the epilog keeps its lines), and every option's default shown: "(default: X)" is
    added where the help text does not already say what the default is. An option whose default is None
    or a flag must say it in its own words (tests/test_cli_help.py checks every subcommand)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.nargs == 0
                or action.default in (None, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="judge-core", description="Pairwise logit LLM judge backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, epilog=getattr(module, "EPILOG", None),
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
