"""`judge-core score MODEL INPUT.jsonl -o OUTPUT.jsonl`: one output row per input row, in input order.

What a user sees of the rules (input, ids, OUTPUT and its sidecar files, --resume, exit status) is
score_help.EPILOG, shown by `judge-core score --help`. How it is done: input rows are read as bytes with a bounded
readline (score_input.py); OUTPUT is checked and locked before the model loads (score_output.py),
checked against INPUT for --resume (score_resume.py), and written in input order as verdicts finish,
rows finished early waiting in OUTPUT.partial (score_writer.py).
"""

from __future__ import annotations

import sys
from itertools import count

from ..wording import plural

from .model_arg import add_judge_arguments, judge_argument_problem, judge_from_args
from .score_input import count_lines, open_input, read_rows
from .score_help import EPILOG  # noqa: F401 - shown by `judge-core score --help` (main.py)
from .score_output import Output, OutputError, UsageError
from .score_ray import add_ray_arguments, wants_ray
from .score_report import report_done, report_interrupted
from .score_resume import ResumeCheck, ResumeError

HELP = "score pairs from a JSONL file into a JSONL file of verdicts"


def add_arguments(parser) -> None:
    add_judge_arguments(parser)
    parser.add_argument("input", help="JSONL (or .jsonl.gz, or - for stdin) of {id, instruction, response_1, "
                                      "response_2}")
    parser.add_argument("-o", "--output", required=True, help="JSONL (or .jsonl.gz, or - for stdout) of verdicts")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue OUTPUT: judge only rows not yet in it")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    parser.add_argument("--max-line-bytes", type=int, default=4 << 20,
                        help="longer input lines become error rows unread (default 4 MiB)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_arguments(parser)  # --replicas N: the same job on Ray Data (score_ray.py)


def check_options(args) -> None:
    """Raise UsageError for any option the model load would reject, before it starts."""
    problem = judge_argument_problem(args)
    if problem:
        raise UsageError(problem)
    if args.max_line_bytes is not None and args.max_line_bytes < 1:
        raise UsageError(f"--max-line-bytes must be a positive integer, got {args.max_line_bytes}")


def run(args) -> int:
    if wants_ray(args):
        from .score_ray import run as run_on_ray

        return run_on_ray(args)
    stream = output = None
    try:
        check_options(args)
        try:
            stream = open_input(args.input)
        except OSError as e:
            raise UsageError(f"cannot read input {args.input}: {e.strerror or e}") from None
        output = Output.prepare(args.output, input_path=args.input, resume=args.resume, overwrite=args.overwrite)
        if args.resume and args.input != "-":  # stdin is checked as it is read (before anything is written)
            _check_resume(args, output)
        return _score(args, stream, output)
    except UsageError as e:
        if output is not None:
            output.abort()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before judging started (_score handles it after)
        if output is not None:
            output.abort()
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    finally:
        if stream is not None and stream is not sys.stdin.buffer:
            stream.close()


def _check_resume(args, output: Output) -> None:
    """OUTPUT (and its journal) against the whole of INPUT, before the model loads."""
    with open_input(args.input) as again:
        try:
            _resume_check(args, output).check_all(read_rows(again, args.max_line_bytes))
        except ResumeError as e:
            raise UsageError(f"--resume: {e}") from None


def _resume_check(args, output: Output) -> ResumeCheck:
    return ResumeCheck(output.existing, args.output, "stdin" if args.input == "-" else args.input)


def _score(args, stream, output: Output) -> int:
    ex = output.existing
    if args.resume:
        print(f"resuming: {plural(ex.rows, 'row')} already in {args.output}, {plural(len(ex.carried), 'finished row')} "
              f"in {output.journal_path}", file=sys.stderr)
    try:
        try:
            judge = judge_from_args(args)  # a bad model or option: one line on stderr, SystemExit(2)
        except SystemExit as e:
            output.abort()
            return int(e.code) if isinstance(e.code, int) else 2
        except OSError as e:
            output.abort()
            print(f"error: cannot load the model {args.model}: {e}", file=sys.stderr)
            return 2
        writer = output.open()
        malformed = _judge_rows(args, judge, stream, writer, _resume_check(args, output))
        output.finish()
    except KeyboardInterrupt:
        return report_interrupted(args, output, ex)
    except ResumeError as e:  # stdin that does not continue OUTPUT: found before any row was written
        output.abort()
        print(f"error: --resume: {e}", file=sys.stderr)
        return 2
    except OutputError as e:
        output.abort()
        print(f"error: {e}", file=sys.stderr)
        return 1

    return report_done(args, output, malformed)


def _verdict_fields(judge):
    """row -> output fields for the judge's spec: {p1, p2, pass1, pass2} for the card's judge; {score, probs[,
    mass]} for a pointwise spec. A spec other than the default names itself and its hash on every row
    (tournament caches and readers key on them)."""
    from ..specs import DEFAULT_SPEC

    spec = getattr(judge, "spec", None)
    if spec is None or spec.pairwise:
        fields = lambda score: score.to_dict()  # noqa: E731
    else:
        fields = lambda score: score.to_dict(spec.label_texts)  # noqa: E731
    if spec is None or spec.name == DEFAULT_SPEC and spec.hash == load_default_hash():
        return fields
    named = {"spec": spec.name, "spec_hash": spec.hash}
    return lambda score: {**fields(score), **named} if score.ok else fields(score)


def load_default_hash() -> str:
    from ..specs import load_spec

    return load_spec().hash


def _judge_rows(args, judge, stream, writer, check: ResumeCheck) -> int:
    """Judge every input row OUTPUT does not hold yet, in one `judge_stream` run over the input (read as the
    judge asks for more: one chunk ramp and one tokenizer prefetch for the whole file); returns the number of
    malformed lines."""
    from tqdm.auto import tqdm

    ex = check.ex
    lines = count_lines(args.input)
    total = max(lines - ex.rows, 0) if lines is not None else None
    bar = tqdm(total=total, unit="pair", desc="judging", disable=args.no_progress, dynamic_ncols=True)
    rows = check.pending(read_rows(stream, args.max_line_bytes))
    verdict = _verdict_fields(judge)
    judging: dict[int, object] = {}  # the judge's item index -> its input row, until its verdict is written
    taken = count()  # item indices, in the order the judge takes the pairs
    malformed = 0

    def items():
        """The pairs to judge; every other row (finished before, malformed) goes to the writer in passing."""
        nonlocal malformed
        for row in rows:
            writer.expect([row.key])  # OUT's order is the input's: announced as read
            if row.key in ex.carried:
                writer.put(row.key, ex.carried.pop(row.key), journaled=True)
                bar.update(1)
            elif row.error is not None:
                writer.put(row.key, {**row.ident, "error": row.error})
                malformed += 1
                bar.update(1)
            else:
                judging[next(taken)] = row
                yield row.pair

    def on_result(i: int, score) -> None:
        row = judging.pop(i)
        writer.put(row.key, {**row.ident, **verdict(score)})

    try:
        judge.judge_stream(items(), on_result, progress=bar)
    finally:
        bar.close()
    if judging:  # a judge must answer every item it took; a row without a verdict would be lost silently
        raise RuntimeError(f"the judge returned no verdict for {plural(len(judging), 'row')}")
    if ex.carried:  # only stdin gets here (a file INPUT was checked whole before the model loaded)
        print(f"warning: {plural(len(ex.carried), 'finished row')} in {args.output}.partial answered no input row "
              f"and were dropped", file=sys.stderr)
    return malformed
