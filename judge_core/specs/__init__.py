"""Judge specs: what a logit judge renders and reads (spec.py), the built-ins (builtin.py), and `load_spec`,
which turns a name, a JSON/TOML file, a dict or a JudgeSpec into a validated JudgeSpec before anything loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .builtin import BUILTIN, DEFAULT_SPEC, builtin_spec
from .spec import JudgeSpec, Label, Message, SpecError, check_spec, spec_from_dict

__all__ = ["BUILTIN", "DEFAULT_SPEC", "JudgeSpec", "Label", "Message", "SpecError", "load_spec", "spec_from_dict"]


def load_spec(spec: Any = None) -> JudgeSpec:
    """None (the default, the card's judge), a built-in name, a path to a .json/.toml spec file, a dict, or a
    JudgeSpec (checked again)."""
    if spec is None:
        return builtin_spec(DEFAULT_SPEC)
    if isinstance(spec, JudgeSpec):
        return check_spec(spec)
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    if isinstance(spec, (str, Path)):
        if str(spec) in BUILTIN:
            return builtin_spec(str(spec))
        path = Path(spec)
        if path.suffix.lower() in (".json", ".toml") or path.exists():
            return spec_from_dict(_read_file(path), where=f"spec file {path}")
        raise SpecError(f"unknown spec {str(spec)!r}: not a built-in ({', '.join(sorted(BUILTIN))}) and not a "
                        ".json/.toml file")
    raise SpecError(f"spec must be a name, a path, a dict or a JudgeSpec, got {type(spec).__name__}")


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"spec file {path}: cannot read it ({e.strerror or e})") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise SpecError(f"spec file {path}: TOML needs Python 3.11+ (tomllib); write the spec as JSON") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"spec file {path}: not valid TOML ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"spec file {path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
