"""`judge-core score MODEL INPUT.jsonl -o OUTPUT.jsonl`: one output row per input row, in order.

Input rows: {"id", "instruction", "response_1", "response_2"}. Output rows: {"id", "p1", "p2",
"pass1", "pass2"} or {"id", "error"}. A line that cannot be judged (bad JSON, missing or non-string
fields, a prompt over the model's context) becomes an error row; nothing is dropped. A row with no
usable id also carries "line" (1-based), which is how --resume recognises it.
Output is appended and flushed chunk by chunk, so an interrupted run resumes with --resume.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from .model_arg import add_judge_arguments, judge_from_args

HELP = "score pairs from a JSONL file into a JSONL file of verdicts"
CHUNK = 1024  # pairs judged (and written) at a time


def add_arguments(parser) -> None:
    add_judge_arguments(parser)
    parser.add_argument("input", help="JSONL (or .jsonl.gz) of {id, instruction, response_1, response_2}")
    parser.add_argument("-o", "--output", required=True, help="JSONL file of verdicts")
    parser.add_argument("--resume", action="store_true", help="skip rows whose id is already in OUTPUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8")


def parse_line(text: str, line_no: int) -> tuple[dict, object]:
    """-> (row identity for the output, the pair dict or an error message string)."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        return {"id": None, "line": line_no}, f"line {line_no}: invalid JSON ({e.msg} at column {e.colno})"
    if not isinstance(row, dict):
        return {"id": None, "line": line_no}, f"line {line_no}: expected a JSON object, got {type(row).__name__}"
    ident = row.get("id")
    key = {"id": ident} if isinstance(ident, (str, int)) and not isinstance(ident, bool) else {"id": None, "line": line_no}
    if key["id"] is None:
        return key, f"line {line_no}: missing or invalid 'id' (a string or integer)"
    return key, row


def row_key(row: dict):
    return ("id", row["id"]) if row.get("id") is not None else ("line", row.get("line"))


def done_keys(output: Path) -> set:
    keys = set()
    if not output.exists():
        return keys
    with open(output, encoding="utf-8") as f:
        for text in f:
            try:
                keys.add(row_key(json.loads(text)))
            except (json.JSONDecodeError, AttributeError, KeyError):
                continue  # a torn last line from an interrupted run: that row is redone
    return keys


def run(args) -> int:
    output = Path(args.output)
    if not Path(args.input).exists():
        print(f"error: input file {args.input} does not exist", file=sys.stderr)
        return 2
    skip = done_keys(output) if args.resume else set()
    if output.exists() and not args.resume:
        output.unlink()

    with open_text(args.input) as f:
        rows = [parse_line(text, n) for n, text in enumerate(f, 1) if text.strip()]
    todo = [(key, item) for key, item in rows if row_key(key) not in skip]
    print(f"{len(rows)} rows in {args.input}; {len(rows) - len(todo)} already in {output}, {len(todo)} to judge",
          file=sys.stderr)

    judge = judge_from_args(args)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="pair", desc="judging", disable=args.no_progress, dynamic_ncols=True)
    counts = {"scored": 0, "errors": 0, "malformed": 0}
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "a", encoding="utf-8") as out:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            # Malformed rows are judged as failing pairs so that compare_many keeps every row in place.
            scores = judge.compare_many([item if isinstance(item, dict) else None for _, item in chunk], progress=bar)
            for (key, item), score in zip(chunk, scores):
                if isinstance(item, str):
                    record = {**key, "error": item}
                    counts["malformed"] += 1
                else:
                    record = {**key, **score.to_dict()}
                counts["scored" if "error" not in record else "errors"] += 1
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
    bar.close()
    print(f"done: {counts['scored']} scored, {counts['errors']} errors ({counts['malformed']} malformed lines) "
          f"-> {output}", file=sys.stderr)
    return 0
