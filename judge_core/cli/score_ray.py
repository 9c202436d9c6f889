"""`judge-core score ... --replicas N [--ray-address ADDR]`: the same job on Ray Data, one judge per replica.

The contract is the single-process one (score.py): one output row per input row, in input order; error
rows for bad lines; the lock; --resume / --overwrite; JSONL, .jsonl.gz and `-`; plus Parquet in and out.

The driver (this process) reads and checks every input row first (as score_input does), answers what
needs no model (malformed lines, rows finished in OUT.partial) and stages the rest as token-sized blocks
(judge_core/ray/blocks.py) in Ray's object store, which spills to disk. Ray Data then runs the blocks
on a pool of JudgeReplica actors; verdicts come back in completion order and go through the same
OrderedWriter, so OUT advances in input order and every finished row is journaled at once. Every
staged row must come back exactly once: a missing or doubled row fails the run (exit 1) instead of
a silent gap, and --resume then finishes it.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from .model_arg import judge_argument_problem, parse_budget
from .score_input import open_input, read_rows
from .score_output import Output, OutputError, UsageError
from .score_report import report_done, report_interrupted
from .score_parquet import (count_parquet_rows, is_parquet, parquet_rows, seed_working_file, working_path,
                            write_parquet)


def add_ray_arguments(parser) -> None:
    g = parser.add_argument_group("scale-out on Ray (pip install judge_core[ray])")
    g.add_argument("--replicas", type=int, default=None,
                   help="judge on Ray Data with N replicas, one judge each (one per GPU) (default: none, one process here)")
    g.add_argument("--ray-address", default=None,
                   help="the Ray cluster to run on (`auto`: the one `ray start --head` made here); "
                        "default: a local Ray started for this run")
    g.add_argument("--replica-gpus", type=float, default=None,
                   help="GPUs per replica (default: 1 when the cluster has GPUs, else 0)")
    g.add_argument("--replica-cpus", type=float, default=None, help="CPUs reserved per replica (default: Ray's, 1)")
    g.add_argument("--block-tokens", type=int, default=None,
                   help="estimated tokens per block handed to a replica (default: 16 token budgets)")


def wants_ray(args) -> bool:
    """--replicas, or a Parquet input/output (handled by this path only)."""
    return args.replicas is not None or is_parquet(args.input) or is_parquet(args.output)


def ray_option_problem(args) -> str | None:
    if args.replicas is None:
        return "Parquet input or output is handled by the Ray path: add --replicas N (1 is fine)"
    if args.replicas < 1:
        return f"--replicas must be a positive integer, got {args.replicas}"
    if importlib.util.find_spec("ray") is None:
        return "--replicas runs on Ray Data, which is not installed: pip install 'judge_core[ray]'"
    if args.device not in (None, "cpu", "cuda"):
        return (f"--device {args.device!r}: with --replicas each replica sees only its own GPU(s) as `cuda`; "
                f"use --device cuda or cpu, or leave it out")
    for flag, value in (("--replica-gpus", args.replica_gpus), ("--replica-cpus", args.replica_cpus)):
        if value is not None and value < 0:
            return f"{flag} must be >= 0, got {value}"
    if args.block_tokens is not None and args.block_tokens < 1:
        return f"--block-tokens must be a positive integer, got {args.block_tokens}"
    if args.model != "tiny" and not os.path.exists(args.model) and args.model.count("/") != 1:
        return f"MODEL {args.model!r}: no such directory, and not a hub repo id (org/name)"
    from ..specs import SpecError, load_spec
    from ..tournament.cache import spec_key

    try:
        spec = load_spec(getattr(args, "spec", None))
    except SpecError as e:
        return str(e)
    if hasattr(args, "input") and spec_key(spec) is not None:
        # score's Ray path writes the card's pair rows only (rank --replicas plays any pairwise spec)
        return f"--spec {spec.name} with --replicas: `score` on Ray judges with the default spec only; drop --replicas"
    inp, out = getattr(args, "input", "-"), getattr(args, "output", "-")
    if is_parquet(out) and inp != "-" and os.path.exists(out) and os.path.exists(inp) and os.path.samefile(inp, out):
        return f"-o {out} is the input file"
    return judge_argument_problem(args)


def judge_options(args) -> dict:
    """Judge.from_pretrained keywords, from the same options the single-process run reads."""
    return {"dtype": args.dtype, "backend": args.backend, "token_budget": parse_budget(args.token_budget),
            "ascii_json": not args.unicode_json, "max_context": args.max_context,
            "chat_template_kwargs": {"enable_thinking": False} if args.no_thinking else None,
            "quantization": args.quantization, "fp8_compute": args.fp8_compute, "revision": args.revision,
            "spec": spec_option(args)}


def spec_option(args) -> dict | None:
    """--spec as a replica's Judge.from_pretrained takes it: the spec's dict (a spec file need not exist on the
    replica's node); None for the default."""
    from ..specs import load_spec

    spec = getattr(args, "spec", None)
    return None if spec is None else load_spec(spec).to_dict()


def run(args) -> int:
    stream = output = None
    parquet_out = is_parquet(args.output)
    try:
        problem = ray_option_problem(args)
        if problem:
            raise UsageError(problem)
        if args.max_line_bytes is not None and args.max_line_bytes < 1:
            raise UsageError(f"--max-line-bytes must be a positive integer, got {args.max_line_bytes}")
        try:
            if is_parquet(args.input):
                count_parquet_rows(args.input)  # readable and a Parquet file
            else:
                stream = open_input(args.input)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read input {args.input}: {getattr(e, 'strerror', None) or e}") from None
        spec = args.output
        if parquet_out:
            if os.path.exists(spec) and os.path.getsize(spec) > 0 and not (args.resume or args.overwrite):
                raise UsageError(f"{spec} already exists: pass --resume to continue it, or --overwrite to replace it")
            if args.resume:
                seed_working_file(spec)
            elif args.overwrite and os.path.exists(working_path(spec)):
                pass  # Output.prepare --overwrite truncates the working file once the run starts
            spec = working_path(spec)
        output = Output.prepare(spec, input_path=args.input, resume=args.resume, overwrite=args.overwrite)
        return _score(args, stream, output, parquet_out)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if output is not None:
            output.abort()
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    finally:
        if stream is not None and stream is not sys.stdin.buffer:
            stream.close()


def input_rows(args, stream):
    return parquet_rows(args.input) if is_parquet(args.input) else read_rows(stream, args.max_line_bytes)


def _score(args, stream, output: Output, parquet_out: bool) -> int:
    from .score_ray_job import JobFailed, RayJob

    from ..wording import plural
    from .score_resume import ResumeCheck, ResumeError

    ex = output.existing
    if args.resume:
        print(f"resuming: {plural(ex.rows, 'row')} already in {args.output}, "
              f"{plural(len(ex.carried), 'finished row')} in {output.journal_path}", file=sys.stderr)
    # OUT's rows must answer the first input rows, in order (score_resume.py); the rest go to Ray.
    check = ResumeCheck(ex, args.output, "stdin" if args.input == "-" else args.input)
    job = RayJob(args, judge_options(args))
    try:
        try:
            job.stage(check.pending(input_rows(args, stream)), ex)
        except ResumeError as e:
            output.abort()
            print(f"error: --resume: {e}", file=sys.stderr)
            return 2
        writer = output.open()
        job.run(writer, ex)
        output.finish()
        if parquet_out:
            write_parquet(args.output)
    except KeyboardInterrupt:
        return report_interrupted(args, output, ex)
    except OutputError as e:
        output.abort()
        print(f"error: {e}", file=sys.stderr)
        return 1
    except JobFailed as e:
        output.abort()
        print(f"error: {e}; the rows finished so far are kept, rerun with --resume", file=sys.stderr)
        return 1
    finally:
        job.close()

    return report_done(args, output, job.malformed, where=f" on {args.replicas} replica{'s' if args.replicas != 1 else ''}")


def judge_pool(args):
    """A RayJudgePool for commands that judge round by round (`judge-core rank --replicas N`): Ray
    joined (or started) for the rest of this process, N replicas with the command's judge options."""
    from .model_arg import usage_error

    problem = ray_option_problem(args)
    if problem:
        raise usage_error(problem)
    from ..ray.pool import RayJudgePool
    from .score_ray_job import connect, model_spec

    connect(args.ray_address)
    return RayJudgePool(model_spec(args.model), replicas=args.replicas, num_gpus=args.replica_gpus,
                        num_cpus=args.replica_cpus, device=args.device, block_tokens=args.block_tokens,
                        **judge_options(args))
