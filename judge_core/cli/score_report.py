"""The closing lines of a `judge-core score` run (interrupted, or done), shared by its two paths
(score.py in one process, score_ray.py on Ray)."""

from __future__ import annotations

import sys

from ..wording import plural


def report_interrupted(args, output, existing) -> int:
    """Ctrl-C after judging started: what was written and how to go on; exit status 130."""
    output.abort()
    writer = output.writer
    written = existing.rows + (writer.written if writer else 0)
    kept = f" ({plural(writer.waiting, 'more finished row')} kept in {output.journal_path})" \
        if writer and writer.journal and writer.waiting else ""
    again = "rerun with --resume" if output.kind == "file" else f"{args.output} cannot be resumed"
    print(f"interrupted: {plural(written, 'row')} written{kept}, {again}", file=sys.stderr)
    return 130


def report_done(args, output, malformed: int, where: str = "") -> int:
    """The summary line; exit status 1 when every row failed, else 0."""
    writer, ex = output.writer, output.existing
    print(_summary(args, output, writer, malformed, where), file=sys.stderr)
    scored = ex.scored + writer.restored_scored + writer.scored
    failed = ex.failed + writer.restored_failed + writer.failed
    if failed and not scored:
        print(f"error: every row failed ({failed}); see the error rows in {args.output}", file=sys.stderr)
        return 1
    return 0


def _summary(args, output, writer, malformed: int, where: str) -> str:
    """What this run did, and (--resume) what earlier runs had done: rows in OUTPUT, rows from the journal."""
    line = (f"done: {writer.scored} scored, {writer.failed} failed ({plural(malformed, 'malformed line')})"
            f"{where}{' in this run' if args.resume else ''}")
    if args.resume:
        ex = output.existing
        before = ex.rows + writer.restored
        line += (f"; {plural(before, 'row')} {'was' if before == 1 else 'were'} already there "
                 f"({ex.rows} in {args.output}, {writer.restored} restored from {output.journal_path})")
    return f"{line} -> {args.output}"
