"""What an earlier `judge-core score` run left in OUTPUT and OUTPUT.partial, for --resume.

A row counts as done only if it is whole: it ends with a newline and holds a JSON object (in a gzip
OUTPUT: it lies in a complete member). The sound prefix of each file is measured here so that the
torn tail can be cut off (in place) once the model has loaded.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .score_input import usable_id


@dataclass
class Existing:
    """What a previous run left: keys of rows in OUT, their counts, and how much of each file is sound."""

    done: set = field(default_factory=set)
    scored: int = 0
    failed: int = 0
    out_keep: int = 0  # bytes of OUT up to the end of its last sound row
    out_size: int = 0
    carried: dict = field(default_factory=dict)  # key -> row, from the journal, not yet in OUT
    journal_keep: int = 0
    journal_size: int = 0


def scan_previous(path: Path, journal: Path, *, gz: bool) -> Existing:
    ex = Existing()
    if path.exists():
        ex.out_size = path.stat().st_size
        rows = gzip_rows(path) if gz else plain_rows(path)
        seen: dict = {}
        for row, end in rows:
            key = row_key(row, seen)
            if key is not None:
                ex.done.add(key)
                ex.failed += "error" in row
                ex.scored += "error" not in row
            ex.out_keep = end
    if journal.exists():
        ex.journal_size = journal.stat().st_size
        for entry, end in plain_rows(journal):
            ex.journal_keep = end
            key = tuple(entry.get("key") or ())
            if key and key not in ex.done and isinstance(entry.get("row"), dict):
                ex.carried[key] = entry["row"]
    return ex


def row_key(row: dict, seen: dict):
    """The key an output row answers: ("id", id, n) for the n-th row with that id, or ("line", n)."""
    ident = row.get("id")
    if usable_id(ident):
        seen[ident] = seen.get(ident, 0) + 1
        return ("id", ident, seen[ident])
    line = row.get("line")
    return ("line", line) if isinstance(line, int) else None


def _sound_row(line: bytes) -> dict | None:
    """A complete row: ends with a newline and holds a JSON object. Anything else is a torn write."""
    if not line.endswith(b"\n"):
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def plain_rows(path: Path):
    """(row, end offset) for each sound row; unsound rows are skipped (only a tail of them is cut off)."""
    offset = 0
    with open(path, "rb") as f:
        for line in f:
            offset += len(line)
            row = _sound_row(line)
            if row is not None:
                yield row, offset


def gzip_rows(path: Path):
    """(row, end offset of its member) for rows in complete gzip members; stops at a torn or corrupt member."""
    for data, end in gzip_members(path):
        lines = data.splitlines(keepends=True)
        rows = [_sound_row(line) for line in lines]
        if not lines or rows[-1] is None:
            return  # a member that does not end with a whole row was not written by a finished flush
        for row in rows:
            if row is not None:
                yield row, end


def gzip_members(path: Path):
    """(decompressed data, end offset) of each complete gzip member, in order."""
    consumed = 0
    with open(path, "rb") as f:
        decomp, parts = zlib.decompressobj(wbits=31), []
        while block := f.read(1 << 20):
            while block:
                try:
                    parts.append(decomp.decompress(block))
                except zlib.error:
                    return
                if not decomp.eof:
                    consumed += len(block)
                    break
                consumed += len(block) - len(decomp.unused_data)
                yield b"".join(parts), consumed
                block, decomp, parts = decomp.unused_data, zlib.decompressobj(wbits=31), []
