"""`judge-core score MODEL INPUT.jsonl -o OUTPUT.jsonl`: one output row per input row, in input order.

Input rows: {"id", "instruction", "response_1", "response_2"}; INPUT may be `-` (stdin) or `*.gz`.
Output rows: {"id", "p1", "p2", "pass1", "pass2"} or {"id", "error"}. A line that cannot be judged
(invalid UTF-8 or JSON, longer than --max-line-bytes, missing or non-string fields, a prompt over the
model's context) becomes an error row naming its line; nothing is dropped. A row with no usable id
(a string or integer) carries "line" (1-based) instead. Ids may repeat: the n-th row with id "x" is
its own row.

OUTPUT: `-` writes to stdout (progress and summary always go to stderr); a device or FIFO is written
as is; `*.gz` is gzip (whole members, so it can be resumed). An existing non-empty OUTPUT is never
touched unless --resume (continue it) or --overwrite (truncate it, once the model has loaded) is given.
Options, input and OUTPUT are all checked before the model loads. One run at a time per OUTPUT (a lock
on OUTPUT.lock names the PID holding it).

Every verdict is saved as soon as it is finished: rows reach OUTPUT in input order, and finished rows
still waiting for an earlier one are kept in OUTPUT.partial (deleted when the run completes). After a
crash, Ctrl-C or kill, `--resume` drops a torn last row, takes the rows in OUTPUT and OUTPUT.partial
as done and judges only the rest.

Exit status (a partly failed run still exits 0: its verdicts are good and each failure is an error row
counted in the summary; a script that needs every row checks the rows or the summary):
  0    the run completed and at least one row was scored (or the input had no rows)
  1    every row failed (nothing was scored: a wrong input format, say), or OUTPUT could not be
       written (disk full: one line naming OUTPUT; rows already written stay valid, --resume goes on)
  2    a usage error: a bad option, an unreadable input, OUTPUT in use or existing without --resume /
       --overwrite, a model that does not load; nothing was written
  130  Ctrl-C: "interrupted: N rows written, rerun with --resume"
"""

from __future__ import annotations

import sys
from itertools import islice

from .model_arg import add_judge_arguments, judge_argument_problem, judge_from_args
from .score_input import count_lines, open_input, read_rows
from .score_output import Output, OutputError, UsageError
from .score_ray import add_ray_arguments, wants_ray

HELP = "score pairs from a JSONL file into a JSONL file of verdicts"
CHUNK = 4096  # input rows handed to compare_many at a time (its length sort works within a call)


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
        return _score(args, stream, output)
    except UsageError as e:
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


def _score(args, stream, output: Output) -> int:
    ex = output.existing
    if args.resume:
        print(f"resuming: {len(ex.done)} rows already in {args.output}, {len(ex.carried)} finished rows in "
              f"{output.journal_path}", file=sys.stderr)
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
        malformed = _judge_rows(args, judge, stream, writer, ex)
        output.finish()
    except KeyboardInterrupt:
        output.abort()
        writer = output.writer
        written = len(ex.done) + (writer.written if writer else 0)
        kept = f" ({writer.waiting} more finished rows kept in {output.journal_path})" \
            if writer and writer.journal and writer.waiting else ""
        again = "rerun with --resume" if output.kind == "file" else f"{args.output} cannot be resumed"
        print(f"interrupted: {written} rows written{kept}, {again}", file=sys.stderr)
        return 130
    except OutputError as e:
        output.abort()
        print(f"error: {e}", file=sys.stderr)
        return 1

    scored, failed = ex.scored + writer.scored, ex.failed + writer.failed
    before = f"; {len(ex.done)} rows were already there" if args.resume else ""
    print(f"done: {writer.scored} scored, {writer.failed} failed ({malformed} malformed lines){before} "
          f"-> {args.output}", file=sys.stderr)
    if failed and not scored:
        print(f"error: every row failed ({failed}); see the error rows in {args.output}", file=sys.stderr)
        return 1
    return 0


def _judge_rows(args, judge, stream, writer, ex) -> int:
    """Judge every input row not done yet, chunk by chunk; returns the number of malformed lines."""
    from tqdm.auto import tqdm

    lines = count_lines(args.input)
    total = max(lines - len(ex.done), 0) if lines is not None else None
    bar = tqdm(total=total, unit="pair", desc="judging", disable=args.no_progress, dynamic_ncols=True)
    rows = read_rows(stream, args.max_line_bytes)
    malformed = 0
    try:
        while chunk := list(islice(rows, CHUNK)):
            todo = [row for row in chunk if row.key not in ex.done]
            writer.expect([row.key for row in todo])
            to_judge = []
            for row in todo:
                if row.key in ex.carried:
                    writer.put(row.key, ex.carried.pop(row.key), journaled=True)
                    bar.update(1)
                elif row.error is not None:
                    writer.put(row.key, {**row.ident, "error": row.error})
                    malformed += 1
                    bar.update(1)
                else:
                    to_judge.append(row)
            if not to_judge:
                continue

            def on_result(i, score, to_judge=to_judge):
                writer.put(to_judge[i].key, {**to_judge[i].ident, **score.to_dict()})

            scores = judge.compare_many([row.pair for row in to_judge], progress=bar, on_result=on_result)
            for row, score in zip(to_judge, scores):  # a judge that did not report some rows as it went
                writer.put(row.key, {**row.ident, **score.to_dict()})
    finally:
        bar.close()
    return malformed
