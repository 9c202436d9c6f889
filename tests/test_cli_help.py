"""`judge-core CMD --help`: every option's default is shown, and `score --help` carries the rules a user
needs (exit status, blank lines, the id rule, the .partial / .lock files)."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from judge_core.cli.main import SUBCOMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def option_help(sub: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text argparse prints for one option (defaults expanded)."""
    formatter = sub._get_formatter()
    return formatter._expand_help(action) if action.help else ""


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_help_shows_every_default(command):
    sub = subparsers()[command]
    missing = []
    for action in sub._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction) or action.required:
            continue
        if action.nargs == 0 and action.default in (False, None):  # an off-by-default flag
            continue
        text = option_help(sub, action)
        if "default" not in text:
            missing.append(f"{action.option_strings[-1]}: {text!r}")
    print(f"{command}: options without a default in --help: {missing}")
    assert not missing


def test_score_help_names_exit_codes_blank_lines_ids_and_sidecar_files():
    # a real process: what the user types
    env_path = {"PYTHONPATH": str(ROOT), "COLUMNS": "120", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "judge_core.cli.main", "score", "--help"], capture_output=True,
                         text=True, env=env_path, check=True).stdout
    epilog = out[out.index("exit status:"):]
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {code}" in epilog, code
    assert "Blank lines are skipped" in out
    assert 'A row without one' in out and 'error row' in out and '"line"' in out
    assert "OUTPUT.partial" in out and "OUTPUT.lock" in out
    assert "--threads" in out
