"""Shared command-line options for building a Judge: MODEL (a path, a hub id, or `tiny`), dtype, device, budget."""

from __future__ import annotations

import argparse


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint directory or hub id; `tiny` = the embedded random tiny judge")
    parser.add_argument("--dtype", default=None, help="bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    parser.add_argument("--backend", default="auto", help="auto | hf | packed (default: auto)")
    parser.add_argument("--token-budget", default="32768",
                        help="max tokens per forward batch, padding counted (default 32768), or `auto`")
    parser.add_argument("--unicode-json", action="store_true",
                        help="write the user JSON with ensure_ascii=False (the card's example; ~15%% fewer tokens)")
    parser.add_argument("--max-context", type=int, default=None,
                        help="longest prompt in tokens (default: the model's max_position_embeddings)")
    parser.add_argument("--no-thinking", action="store_true",
                        help="pass enable_thinking=False to the chat template")


def resolve_model(name: str) -> str:
    if name == "tiny":
        from ..embedded import default_checkpoint

        return str(default_checkpoint())
    return name


def parse_budget(text: str):
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise SystemExit(f"--token-budget must be a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise SystemExit(f"--token-budget must be a positive integer or 'auto', got {text!r}")
    return value


def judge_from_args(args):
    from ..api import Judge

    kwargs = {"enable_thinking": False} if args.no_thinking else {}
    return Judge.from_pretrained(resolve_model(args.model), dtype=args.dtype, device=args.device,
                                 backend=args.backend, token_budget=parse_budget(args.token_budget),
                                 ascii_json=not args.unicode_json,
                                 max_context=args.max_context, **kwargs)
