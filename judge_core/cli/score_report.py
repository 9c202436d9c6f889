"""The closing lines of a `judge-core score` run (interrupted, or done), shared by its two paths.

score_ray.py uses these; score.py holds the same lines inline (to be pointed here when the branches
touching score.py are merged).
"""

from __future__ import annotations

import sys


def report_interrupted(args, output, existing) -> int:
    """Ctrl-C after judging started: what was written and how to go on; exit status 130."""
    output.abort()
    writer = output.writer
    written = len(existing.done) + (writer.written if writer else 0)
    kept = f" ({writer.waiting} more finished rows kept in {output.journal_path})" \
        if writer and writer.journal and writer.waiting else ""
    again = "rerun with --resume" if output.kind == "file" else f"{args.output} cannot be resumed"
    print(f"interrupted: {written} rows written{kept}, {again}", file=sys.stderr)
    return 130


def report_done(args, writer, existing, malformed: int, where: str = "") -> int:
    """The summary line; exit status 1 when every row failed, else 0."""
    scored, failed = existing.scored + writer.scored, existing.failed + writer.failed
    before = f"; {len(existing.done)} rows were already there" if args.resume else ""
    print(f"done: {writer.scored} scored, {writer.failed} failed ({malformed} malformed lines){where}{before} "
          f"-> {args.output}", file=sys.stderr)
    if failed and not scored:
        print(f"error: every row failed ({failed}); see the error rows in {args.output}", file=sys.stderr)
        return 1
    return 0
