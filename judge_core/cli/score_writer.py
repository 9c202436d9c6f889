"""Writing verdict rows for `judge-core score`: in input order, each one durable as soon as it is finished.

Rows finish in completion order (the judge sorts by length); OUT must be in input order. A finished
row goes to OUT as soon as every row before it has gone; until then it waits in memory and, so that a
killed run loses nothing, in the journal OUT.partial (one JSON line per row, flushed at once). A gzip
OUT is written in whole gzip members of up to GZIP_MEMBER_ROWS rows, so every row is journaled until
its member is on disk. "Durable" means handed to the OS (flushed), not fsync'ed: a killed process
loses nothing, a power cut may.
"""

from __future__ import annotations

import gzip
import json
from typing import BinaryIO

GZIP_MEMBER_ROWS = 256  # rows per gzip member: small enough to lose little, large enough to compress


def json_line(record: dict) -> bytes:
    """One JSONL row as UTF-8. Text is kept readable (ensure_ascii=False) unless it holds a lone surrogate
    (an id like "\\ud800" read from a JSON line), which UTF-8 cannot encode: that row is \\u-escaped."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("ascii")


class OutputError(Exception):
    """Writing to `name` failed (disk full, broken pipe, ...)."""

    def __init__(self, name: str, error: OSError):
        super().__init__(f"cannot write {name}: {error.strerror or error}")


class Sink:
    """OUT as a byte stream of JSONL rows; gzip output as a sequence of complete members."""

    def __init__(self, stream: BinaryIO, name: str, *, gz: bool, owned: bool = True):
        self.stream, self.name, self.gz, self.owned = stream, name, gz, owned
        self.pending: list[bytes] = []  # gzip only: rows not yet in a member

    def write(self, line: bytes) -> None:
        if not self.gz:
            self._io(self.stream.write, line)
            return
        self.pending.append(line)
        if len(self.pending) >= GZIP_MEMBER_ROWS:
            self._member()

    def flush(self) -> None:
        self._io(self.stream.flush)

    def close(self) -> None:
        try:
            if self.gz and self.pending:
                self._member()
            self.flush()
        finally:
            if self.owned:
                self._io(self.stream.close)

    def _member(self) -> None:
        self._io(self.stream.write, gzip.compress(b"".join(self.pending), mtime=0))
        self.pending.clear()
        self.flush()

    def _io(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            raise OutputError(self.name, e) from None


class OrderedWriter:
    """Takes finished rows in any order, writes them to the sink in the order announced by `expect`."""

    TRIM_ROWS = 4096  # written rows' keys are forgotten in steps of this many (memory stays flat on huge files)

    def __init__(self, sink: Sink, journal: Sink | None = None):
        self.sink, self.journal = sink, journal
        self.journal_all = sink.gz  # gzip rows are not on disk until their member is written
        self.slots: list = []  # announced keys from absolute index `base` on, in input order
        self.base = 0
        self.position: dict = {}  # key -> absolute index, for rows announced and not yet forgotten
        self.cursor = 0  # absolute index of the next row to write
        self.ready: dict = {}
        self.written = 0
        self.scored = 0  # verdicts of this run
        self.failed = 0  # error rows of this run
        self.restored_scored = 0  # rows a previous run finished, taken from the journal
        self.restored_failed = 0

    def expect(self, keys: list) -> None:
        """Announce the next rows, by key, in input order (after every row announced before)."""
        if self.cursor - self.base >= self.TRIM_ROWS:
            for key in self.slots[:self.cursor - self.base]:
                del self.position[key]
            del self.slots[:self.cursor - self.base]
            self.base = self.cursor
        for key in keys:
            if key in self.position:
                raise RuntimeError(f"row {key!r} was announced twice")
            self.position[key] = self.base + len(self.slots)
            self.slots.append(key)

    def finished(self, key) -> bool:
        return key in self.ready or self.position[key] < self.cursor

    def put(self, key, record: dict, *, journaled: bool = False) -> None:
        """One finished row (`journaled`: it came from the journal, do not journal it again). A row
        already finished is ignored; a row never announced (or long written) is an error."""
        if key not in self.position:
            raise RuntimeError(f"row {key!r} was not announced, or was written long ago")
        if self.finished(key):
            return
        if journaled:
            self.restored_failed += "error" in record
            self.restored_scored += "error" not in record
        else:
            self.failed += "error" in record
            self.scored += "error" not in record
        line = json_line(record)
        if self.journal is not None and not journaled and (self.journal_all or self.position[key] != self.cursor):
            self.journal.write(json_line({"key": list(key), "row": record}))
            self.journal.flush()
        self.ready[key] = line
        moved = False
        end = self.base + len(self.slots)
        while self.cursor < end and self.slots[self.cursor - self.base] in self.ready:
            self.sink.write(self.ready.pop(self.slots[self.cursor - self.base]))
            self.cursor += 1
            self.written += 1
            moved = True
        if moved:
            self.sink.flush()

    @property
    def restored(self) -> int:
        return self.restored_scored + self.restored_failed

    @property
    def waiting(self) -> int:
        """Finished rows not yet in OUT (kept in the journal, or lost with `-o -`)."""
        return len(self.ready) + (len(self.sink.pending) if self.sink.gz else 0)
