"""Shared command-line options for building a Judge: MODEL (a path, a hub id, or `tiny`), dtype, device, budget,
quantization."""

from __future__ import annotations

import argparse
import sys

from ..quant import QUANTIZATIONS


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint directory or hub repo id (org/name, read from the Hugging Face "
                                      "cache, downloaded unless HF_HUB_OFFLINE=1); `tiny` = the embedded random judge "
                                      "(a directory named tiny is ./tiny)")
    parser.add_argument("--revision", default=None,
                        help="hub revision (branch, tag or commit) for a repo id (default: main); not for `tiny` "
                             "or a local directory")
    parser.add_argument("--dtype", default=None, help="bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    parser.add_argument("--backend", default="auto", help="auto | hf | packed (default: auto)")
    parser.add_argument("--token-budget", default="32768",
                        help="max tokens per forward batch, padding counted, or `auto` (default: 32768)")
    parser.add_argument("--unicode-json", action="store_true",
                        help="write the user JSON with ensure_ascii=False (the card's example; ~15%% fewer tokens)")
    parser.add_argument("--max-context", type=int, default=None,
                        help="longest prompt in tokens (default: the model's max_position_embeddings)")
    parser.add_argument("--no-thinking", action="store_true",
                        help="pass enable_thinking=False to the chat template")
    parser.add_argument("--spec", default=None,
                        help="the judge spec: a built-in name (creative-writing, reference-pairwise, pointwise-rubric, "
                             "yes-no-criterion, pollux-4b-criterion) or a .json/.toml file (default: creative-writing, "
                             "the card's pairwise judge); see judge_core/specs")
    parser.add_argument("--parse-special-tokens-in-text", action="store_true",
                        help="tokenize control-token strings (<|im_end|>, ...) inside instructions and responses as "
                             "control tokens, as the card's code does (default: plain text, so a response cannot "
                             "close the judge's turn)")
    parser.add_argument("--quantization", default="none",
                        help=f"{' | '.join(QUANTIZATIONS)} (default: none = the checkpoint as stored, an FP8 checkpoint runs in fp8). "
                             "fp8 = W8A8 FP8 quantized at load from a float checkpoint: CUDA sm_89+ GPUs; on the "
                             "CPU it runs the exact, slow twin")
    parser.add_argument("--no-share-prefixes", action="store_true",
                        help="compute every prompt whole (default: a prefix shared by prompts of a batch, on "
                             "token ids, is computed once on the packed backend)")
    parser.add_argument("--fp8-compute", default="auto",
                        help="auto | twin | scaled_mm: how fp8 layers compute (default: auto = scaled_mm on CUDA, "
                             "twin on the CPU; scaled_mm on the CPU where torch has it, e.g. 2.13)")
    add_threads_argument(parser)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """--threads, for every command that runs a model (judge_core.threads)."""
    parser.add_argument("--threads", default="auto",
                        help="torch CPU threads when the model runs on the CPU, or `auto` (default: auto = torch's "
                             "count capped at the free cores: CPUs less the 1-minute load average, at least 1; "
                             "an OMP_NUM_THREADS you set is kept)")


def threads_problem(args) -> str | None:
    """What is wrong with --threads, or None."""
    from ..threads import parse_threads

    try:
        parse_threads(args.threads)
    except ValueError as e:
        return f"--threads {args.threads!r}: {e}"
    return None


def resolve_model(name: str, revision: str | None = None) -> str:
    """A checkpoint directory for MODEL (judge_core.embedded.resolve_model: `tiny`, a local dir, a hub id)."""
    from ..embedded.resolve import resolve_model as resolve

    return str(resolve(name, revision=revision))


def usage_error(message: str) -> SystemExit:
    """One line on stderr and exit status 2 (a bad option or model: nothing was done)."""
    print(f"error: {message}", file=sys.stderr)
    return SystemExit(2)


def judge_argument_problem(args) -> str | None:
    """What is wrong with the judge options, found without loading anything; None when nothing is."""
    from ..backends import check_backend_name
    from ..dtypes import check_dtype, parse_dtype, resolve_device
    from ..fp8.load import check_fp8_compute
    from ..quant import check_quantization

    def positive(value) -> None:
        if value is not None and value < 1:
            raise ValueError("expected a positive integer")

    checks = (
        ("--backend", args.backend, check_backend_name),
        ("--token-budget", args.token_budget, parse_budget),
        ("--max-context", args.max_context, positive),
        ("--device", args.device, resolve_device),
        ("--dtype", args.dtype, lambda name: name is None or check_dtype(parse_dtype(name))),
        ("--quantization", args.quantization, check_quantization),
        ("--fp8-compute", args.fp8_compute, check_fp8_compute),
    )
    for flag, value, check in checks:
        try:
            check(value)
        except ValueError as e:
            return f"{flag} {value!r}: {e}"
    from ..embedded.resolve import is_embedded

    if args.revision is not None and is_embedded(args.model):
        return (f"--revision {args.revision!r}: `{args.model}` is the embedded judge built on this machine and has no "
                f"revisions; drop --revision, or name a hub repo id")
    return threads_problem(args)


def check_judge_arguments(args) -> None:
    """Exit with status 2 and one line if a judge option is wrong (before anything is loaded)."""
    problem = judge_argument_problem(args)
    if problem:
        raise usage_error(problem)


def parse_budget(text: str):
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise ValueError("expected a positive integer or 'auto'") from None
    if value < 1:
        raise ValueError("expected a positive integer or 'auto'")
    return value


def judge_from_args(args, **overrides):
    """The Judge the options describe; a bad option or checkpoint ends the command with one line (exit 2).

    overrides: further Judge.from_pretrained arguments (e.g. warmup=False)."""
    import torch

    from ..api import Judge
    from ..checkpoint import CheckpointError
    from ..threads import parse_threads
    from ..wording import plural

    check_judge_arguments(args)
    try:
        judge = Judge.from_pretrained(args.model, revision=args.revision, dtype=args.dtype, device=args.device,
                                     backend=args.backend, token_budget=parse_budget(args.token_budget),
                                     ascii_json=not args.unicode_json, max_context=args.max_context,
                                     chat_template_kwargs={"enable_thinking": False} if args.no_thinking else None,
                                     quantization=args.quantization, fp8_compute=args.fp8_compute,
                                     threads=parse_threads(args.threads),
                                     share_prefixes=not getattr(args, "no_share_prefixes", False),
                                     spec=getattr(args, "spec", None),
                                     parse_special_tokens_in_text=getattr(args, "parse_special_tokens_in_text", False),
                                     **overrides)
    except (CheckpointError, ValueError, TypeError) as e:
        raise usage_error(str(e)) from None
    device = judge.backend.device
    threads = f", {plural(torch.get_num_threads(), 'thread')}" if torch.device(device).type == "cpu" else ""
    print(f"judge: {judge.path} (backend {judge.backend.name}, {str(judge.backend.dtype).removeprefix('torch.')}, "
          f"{device}{threads}, token budget {judge.token_budget}"
          f"{', ' + judge.quantization if judge.quantization else ''})", file=sys.stderr)
    return judge
