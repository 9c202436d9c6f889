"""What an earlier `judge-core score` run left in OUTPUT and OUTPUT.partial, checked against INPUT for --resume.

OUT must be what a run on this INPUT writes: one whole verdict row per input row, in input order, so
its n-th row answers the n-th input row (same id and occurrence, or the same line for a row without
an id). The only damage a crash leaves is a torn last write (a last line that is not JSON, or an
unfinished gzip member): that tail is cut off, in place, once the model has loaded. Anything else - a line that is
not a verdict row, a row answering another input row, more rows than INPUT has - means OUT was not
written from this INPUT (or was edited since): --resume refuses, naming the line, before anything
is touched.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from ..wording import plural
from .score_input import InputRow, usable_id


class ResumeError(Exception):
    """OUT (or its journal) does not continue this INPUT; the message names the line and what differs."""


@dataclass
class Existing:
    """What a previous run left: the key of each row in OUT (in order), their counts, the journal's rows
    not yet in OUT, and how much of each file is sound."""

    keys: list = field(default_factory=list)  # keys[n] is the key of OUT's row n + 1 (= input row n + 1)
    scored: int = 0
    failed: int = 0
    out_keep: int = 0  # bytes of OUT up to the end of its last sound row
    out_size: int = 0
    carried: dict = field(default_factory=dict)  # key -> row, from the journal, not yet in OUT
    journal_keep: int = 0
    journal_size: int = 0

    @property
    def rows(self) -> int:
        return len(self.keys)


def scan_previous(path: Path, journal: Path, *, gz: bool) -> Existing:
    """Read OUT and its journal; raises ResumeError for anything but a torn tail that is not a verdict row."""
    ex = Existing()
    if path.exists():
        ex.out_size = path.stat().st_size
        seen: dict = {}
        torn = None  # a line that is not JSON: a torn write if it is the last one, else damage
        for number, row, end in (gzip_rows(path) if gz else plain_rows(path)):
            if torn is not None:
                raise ResumeError(f"{path} line {torn[0]} is not a verdict row ({torn[1]}); {_NOTHING_DONE}")
            if isinstance(row, str):
                torn = (number, row)
                continue
            problem = verdict_problem(row)
            key = row_key(row, seen) if problem is None else None
            if key is None:
                raise ResumeError(f"{path} line {number} is not a verdict row ({problem or 'no id and no line'}); "
                                  f"{_NOTHING_DONE}")
            ex.keys.append(key)
            ex.failed += "error" in row
            ex.scored += "error" not in row
            ex.out_keep = end
    if journal.exists():
        ex.journal_size = journal.stat().st_size
        in_out = set(ex.keys)  # rows journaled while they waited, then written to OUT: done
        for number, entry, end in plain_rows(journal):
            key = tuple(entry.get("key") or ()) if isinstance(entry, dict) else ()
            row = entry.get("row") if isinstance(entry, dict) else None
            problem = verdict_problem(row) if key else "no key"
            if problem is not None:
                raise ResumeError(f"{journal} line {number} is not a finished row ({problem}); {_NOTHING_DONE}")
            ex.journal_keep = end
            if key not in in_out:
                ex.carried.setdefault(key, row)
    return ex


_NOTHING_DONE = "nothing was changed: pass --overwrite to start over, or choose another -o"


def verdict_problem(row) -> str | None:
    """Why `row` is not an output row of `judge-core score` (a verdict or an error row), or None."""
    if isinstance(row, str):
        return row  # the parse error
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    if "error" in row:
        return None if isinstance(row["error"], str) else "'error' is not a string"
    def number(k):
        return isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)

    if not (all(number(k) for k in ("p1", "p2")) or number("score")):  # a pairwise or a pointwise verdict
        return "neither 'error' nor numbers 'p1' and 'p2' (or 'score')"
    return None


def row_key(row: dict, seen: dict):
    """The key an output row answers: ("id", id, n) for the n-th row with that id, or ("line", n)."""
    ident = row.get("id")
    if usable_id(ident):
        seen[ident] = seen.get(ident, 0) + 1
        return ("id", ident, seen[ident])
    line = row.get("line")
    return ("line", line) if isinstance(line, int) and not isinstance(line, bool) else None


def describe(key) -> str:
    """A key as a reader names the row: "id 'p3'", "the 2nd row with id 'p3'", "no id (line 7)"."""
    if key[0] == "line":
        return f"no id (line {key[1]})"
    nth = "" if key[2] == 1 else f"the {_ordinal(key[2])} row with "
    return f"{nth}id {key[1]!r}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class ResumeCheck:
    """Walks INPUT's rows against OUT: the first `ex.rows` input rows must be the rows OUT answers, in
    order; `pending` yields the rest. Used twice for a file INPUT (before the model loads, and while
    scoring) and once for stdin (while scoring: still before any new row is written, since OUT's rows
    come first)."""

    def __init__(self, ex: Existing, out_name: str, input_name: str):
        self.ex, self.out_name, self.input_name = ex, out_name, input_name
        self.matched = 0

    def pending(self, rows: Iterable[InputRow]) -> Iterator[InputRow]:
        keys = self.ex.keys
        for row in rows:
            if self.matched < len(keys):
                if row.key != keys[self.matched]:
                    raise ResumeError(
                        f"{self.out_name} line {self.matched + 1} answers {describe(keys[self.matched])}, but input "
                        f"row {self.matched + 1} (line {row.line} of {self.input_name}) has {describe(row.key)}: "
                        f"{self.out_name} was not written from this input (or one of them changed since); "
                        f"{_NOTHING_DONE}")
                self.matched += 1
                continue
            yield row
        if self.matched < len(keys):
            raise ResumeError(f"{self.out_name} has {plural(len(keys), 'row')}, but {self.input_name} has only "
                              f"{self.matched}: "
                              f"{self.out_name} was not written from this input; {_NOTHING_DONE}")

    def check_all(self, rows: Iterable[InputRow]) -> None:
        """The whole check, before the model loads: OUT's rows, then the journal's (each must answer a
        later input row; read only as far as the last of them)."""
        wanted = set(self.ex.carried)
        rest = self.pending(rows)
        if not wanted:
            next(rest, None)  # runs through OUT's rows (raising at the first that differs) and stops
            return
        for row in rest:
            wanted.discard(row.key)
            if not wanted:
                return
        first = min(wanted, key=str)
        raise ResumeError(f"{self.out_name}.partial holds a finished row for {describe(first)}, which no input row "
                          f"after the first {self.ex.rows} has: it was not written from this input; {_NOTHING_DONE}")


def _parse(line: bytes):
    """The JSON value on a whole line, or the reason (a str) why there is none."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as e:
        return f"invalid JSON: {str(e).splitlines()[0][:80]}" if isinstance(e, json.JSONDecodeError) else \
            f"invalid JSON ({type(e).__name__})"


def plain_rows(path: Path):
    """(line number, parsed value or reason, end offset) for each line that ends with a newline; a last
    line without one is a torn write and is not yielded."""
    offset = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return
            offset += len(line)
            if not line.strip():
                yield number, "a blank line", offset
                continue
            yield number, _parse(line), offset


def gzip_rows(path: Path):
    """(row number, parsed value or reason, end offset of its member) for rows in complete gzip members.
    An unfinished last member is a torn write; corrupt data before the end raises ResumeError."""
    number = 0
    for data, end in gzip_members(path):
        lines = data.splitlines(keepends=True)
        for line in lines:
            number += 1
            whole = line.endswith(b"\n")
            yield number, _parse(line) if whole and line.strip() else ("a blank line" if whole else
                                                                        "a row without its newline"), end


def gzip_members(path: Path):
    """(decompressed data, end offset) of each complete gzip member, in order."""
    consumed = 0
    with open(path, "rb") as f:
        decomp, parts = zlib.decompressobj(wbits=31), []
        while block := f.read(1 << 20):
            while block:
                try:
                    parts.append(decomp.decompress(block))
                except zlib.error as e:
                    raise ResumeError(f"{path}: damaged gzip data after byte {consumed} ({e}); {_NOTHING_DONE}") \
                        from None
                if not decomp.eof:
                    consumed += len(block)
                    break
                consumed += len(block) - len(decomp.unused_data)
                yield b"".join(parts), consumed
                block, decomp, parts = decomp.unused_data, zlib.decompressobj(wbits=31), []
