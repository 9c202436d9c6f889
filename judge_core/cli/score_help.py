"""The rules of `judge-core score` as its user reads them: the epilog of `judge-core score --help`.

README's "Command line" section has the short version: change both together.
"""

EPILOG = """\
input: one JSON object per line, {"id", "instruction", "response_1", "response_2"};
  INPUT may be - (stdin) or *.gz. Blank lines are skipped (they are not rows); every other
  line gives exactly one output row.
ids: a string or an integer. A row without one (missing, null, a float, a list...) is an
  error row that carries "line" (its 1-based line number) instead of an id. Ids may repeat:
  the n-th row with id "x" is its own row.
output: {"id", "p1", "p2", "pass1", "pass2"} per verdict (p1 = P(response_1 is better), in
  percent), or {"id", "error"} for a line that cannot be judged (invalid UTF-8 or JSON, over
  --max-line-bytes, a missing or non-string field, a prompt over the model's context);
  nothing is dropped. -o - writes to stdout (progress and summary go to stderr); *.gz is gzip.
files beside OUTPUT: OUTPUT.lock holds the PID of the run writing OUTPUT while it runs (a
  second run on it is refused; the lock of a killed run does not block). OUTPUT.partial keeps
  finished rows still waiting for an earlier one (--resume takes them); it is deleted when
  the run completes.
resume: an existing OUTPUT is never touched without --resume (continue it) or --overwrite
  (truncate it once the model has loaded). --resume first checks OUTPUT against INPUT: its
  n-th row must answer the n-th input row. A torn last row is dropped; anything else that
  does not match (another input, an edited line) is refused, naming the line. Then only the
  rest is judged.
exit status:
  0    the run completed and at least one row was scored (or the input had no rows); a
       partly failed run exits 0: each failure is an error row, counted in the summary
  1    every row failed (nothing was scored), or OUTPUT could not be written (disk full:
       rows already written stay valid, --resume goes on)
  2    a usage error: a bad option, an unreadable input, OUTPUT in use, existing without
       --resume / --overwrite or not matching INPUT, a model that does not load; nothing
       was written
  130  Ctrl-C: "interrupted: N rows written, rerun with --resume"
"""
