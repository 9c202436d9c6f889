"""Input side of `judge-core score`: JSONL lines (bytes, streamed, bounded) -> InputRow.

Every non-blank line becomes one InputRow: a pair to judge or an error message, never an exception.
Lines are read as bytes with a bounded readline, so a 50 MB line is skipped without being decoded,
parsed or even held in memory; an invalid UTF-8 line or invalid JSON becomes an error naming the line.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

BOM = b"\xef\xbb\xbf"
SKIP_BLOCK = 1 << 20  # how much of an over-long line is read at a time while skipping it


@dataclass(frozen=True)
class InputRow:
    """One input line. key: ("id", id, occurrence) or ("line", line_no); ident: the output row's identity
    fields; pair: the dict to judge, or None with `error` set; line: its 1-based line number."""

    key: tuple
    ident: dict
    pair: dict | None = None
    error: str | None = None
    line: int = 0


def open_input(path: str) -> BinaryIO:
    """The input as a binary stream: `-` is stdin, `*.gz` is decompressed. Raises OSError/ValueError."""
    if path == "-":
        return sys.stdin.buffer
    if os.path.isdir(path):
        raise IsADirectoryError(f"input {path} is a directory, expected a JSONL file")
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115 - caller closes


def count_lines(path: str) -> int | None:
    """Lines in a plain input file (for the progress bar's total); None for stdin and gzip."""
    if path == "-" or path.endswith(".gz") or not os.path.isfile(path):
        return None
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(SKIP_BLOCK):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def read_lines(stream: BinaryIO, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its terminator), or (line number, None) for a line over the limit."""
    line_no = 0
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        line_no += 1
        if line_no == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while (rest := stream.readline(SKIP_BLOCK)) and not rest.endswith(b"\n"):
                pass  # skip the rest of the line unread
            yield line_no, None
            continue
        yield line_no, line.rstrip(b"\r\n")


def usable_id(value) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def read_rows(stream: BinaryIO, max_line_bytes: int) -> Iterator[InputRow]:
    """Every non-blank line as an InputRow, in order. The n-th row with id "x" has key ("id", "x", n), so
    duplicate ids stay distinct rows; a row without a usable id is keyed by its line number."""
    seen: dict = {}
    lines = read_lines(stream, max_line_bytes)
    line_no = 0
    while True:
        try:
            line_no, raw = next(lines)
        except StopIteration:
            return
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # a torn or corrupt .gz input
            yield _failed(line_no + 1, f"the input ends in a damaged gzip stream ({e}); later lines are lost")
            return
        if raw is None:
            yield _failed(line_no, f"longer than --max-line-bytes ({max_line_bytes} bytes); not parsed")
            continue
        if not raw.strip():
            continue
        row = parse_line(raw, line_no)
        if isinstance(row, str):
            yield _failed(line_no, row)
            continue
        ident = row.get("id")
        if not usable_id(ident):
            yield _failed(line_no, "missing or invalid 'id' (a string or integer)")
            continue
        seen[ident] = occurrence = seen.get(ident, 0) + 1
        yield InputRow(("id", ident, occurrence), {"id": ident}, pair=row, line=line_no)


def parse_line(raw: bytes, line_no: int) -> dict | str:
    """The JSON object on one line, or an error message (naming the line) for why there is none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"line {line_no}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1})"
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        # colno is 1-based in characters; the line terminator is already stripped, so an error at the
        # end of the line is not reported as "line 2, column 1".
        return f"line {line_no}: invalid JSON ({e.msg} at column {e.colno})"
    except (RecursionError, ValueError) as e:  # nesting too deep, an integer over Python's digit limit
        return f"line {line_no}: invalid JSON ({type(e).__name__}: {e})"
    if not isinstance(row, dict):
        return f"line {line_no}: expected a JSON object, got {type(row).__name__}"
    return row


def _failed(line_no: int, message: str) -> InputRow:
    if not message.startswith("line "):
        message = f"line {line_no}: {message}"
    return InputRow(("line", line_no), {"id": None, "line": line_no}, error=message, line=line_no)
