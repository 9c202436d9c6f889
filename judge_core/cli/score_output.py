"""OUT of `judge-core score`: checked and locked before the model loads, touched only after it has.

OUT is `-` (stdout), a non-regular file (device, FIFO: written as is), or a regular file, which is
locked (an advisory flock on the sidecar OUT.lock, holding the PID; the kernel drops it when the holder
dies), resumable (rows already in OUT, plus finished rows in the journal OUT.partial) and never
unlinked: --overwrite truncates it in place, --resume truncates a torn tail off.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .score_input import usable_id
from .score_writer import OrderedWriter, OutputError, Sink

__all__ = ["Output", "OutputError", "UsageError"]


class UsageError(Exception):
    """A problem the user fixes on the command line (exit 2), found before anything was written."""


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


class Output:
    def __init__(self, spec: str, *, resume: bool, overwrite: bool):
        self.spec, self.resume, self.overwrite = spec, resume, overwrite
        self.kind = "stdout" if spec == "-" else "file"
        self.gz = spec.endswith(".gz")
        self.journal_path = f"{spec}.partial"
        self.lock: FileLock | None = None
        self.existing = Existing()
        self.writer: OrderedWriter | None = None
        self.closed = False

    # -- before the model loads: checks, lock, what a previous run left; nothing in OUT changes ------
    @classmethod
    def prepare(cls, spec: str, *, input_path: str, resume: bool, overwrite: bool) -> "Output":
        if resume and overwrite:
            raise UsageError("--resume and --overwrite exclude each other: continue OUT, or replace it")
        out = cls(spec, resume=resume, overwrite=overwrite)
        if spec == "-":
            if resume:
                raise UsageError("--resume needs an output file; `-o -` writes to stdout")
            return out
        path = Path(spec)
        if path.exists() and is_special(path):
            if resume:
                raise UsageError(f"--resume: {spec} is not a regular file (a device or pipe); nothing to resume from")
            if not os.access(path, os.W_OK):
                raise UsageError(f"cannot write {spec}: permission denied")
            out.kind = "special"
            return out
        if path.is_dir():
            raise UsageError(f"-o {spec} is a directory; expected a file name")
        if input_path != "-" and path.exists() and os.path.samefile(input_path, path):
            raise UsageError(f"-o {spec} is the input file")
        journal = Path(out.journal_path)
        left = [p for p in (path, journal) if p.exists() and p.stat().st_size > 0]
        if left and not (resume or overwrite):
            raise UsageError(f"{left[0]} already exists: pass --resume to continue {spec}, "
                             f"or --overwrite to replace it")
        if path.exists() and not os.access(path, os.W_OK):
            raise UsageError(f"cannot write {spec}: permission denied")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the directory {path.parent} for {spec}: {e.strerror or e}") from None
        out.lock = FileLock(f"{spec}.lock")
        try:
            out.lock.acquire()
        except BlockingIOError:
            holder = f" (pid {out.lock.holder})" if out.lock.holder else ""
            raise UsageError(f"{spec} is being written by another `judge-core score`{holder}: wait for it to end, "
                             f"or choose another -o") from None
        except OSError as e:
            raise UsageError(f"cannot write in {path.parent.resolve()} (for {spec} and its .lock, .partial "
                             f"sidecars): {e.strerror or e}") from None
        if resume:
            out.existing = scan_previous(path, journal, gz=out.gz)
        return out

    # -- after the model loaded --------------------------------------------------------------------
    def open(self) -> OrderedWriter:
        if self.kind == "stdout":
            self.writer = OrderedWriter(Sink(sys.stdout.buffer, "stdout", gz=False, owned=False))
            return self.writer
        if self.kind == "special":
            self.writer = OrderedWriter(Sink(open(self.spec, "ab"), self.spec, gz=False))  # noqa: SIM115
            return self.writer
        ex = self.existing
        sink = Sink(self._open_append(self.spec, 0 if not self.resume else ex.out_keep, ex.out_size), self.spec,
                    gz=self.gz)
        journal = Sink(self._open_append(self.journal_path, 0 if not self.resume else ex.journal_keep,
                                         ex.journal_size), self.journal_path, gz=False)
        self.writer = OrderedWriter(sink, journal)
        return self.writer

    def _open_append(self, name: str, keep: int, size: int):
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if os.fstat(fd).st_size > keep:
                if self.resume:
                    print(f"warning: {name} ends with a torn row; dropped its last {size - keep} bytes before "
                          f"resuming", file=sys.stderr)
                os.ftruncate(fd, keep)  # in place: OUT is never unlinked or replaced
            return os.fdopen(fd, "ab")
        except OSError as e:
            raise OutputError(name, e) from None

    def finish(self) -> None:
        """The run is complete: close OUT, drop the journal, release the lock."""
        try:
            self._close()
            if self.writer is not None and self.writer.journal is not None and os.path.exists(self.journal_path):
                os.unlink(self.journal_path)
        finally:
            self._release()

    def abort(self) -> None:
        """The run stops early: write what can be written, keep the journal for --resume."""
        try:
            self._close()
        except OutputError:
            pass
        finally:
            self._release()

    def _close(self) -> None:
        if self.writer is None or self.closed:
            return
        self.closed = True
        try:
            self.writer.sink.close()
        finally:
            if self.writer.journal is not None:
                self.writer.journal.close()

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def is_special(path: Path) -> bool:
    """A device, FIFO or socket, or a /dev or /proc path (e.g. /dev/stdout redirected to a file)."""
    return not stat.S_ISREG(os.stat(path).st_mode) or str(path.resolve()).startswith(("/dev/", "/proc/"))


class FileLock:
    """An exclusive, non-blocking flock on a sidecar file that holds the holder's PID."""

    def __init__(self, path: str):
        self.path, self.fd, self.holder = path, None, None

    def acquire(self) -> None:
        """Raises BlockingIOError (holder PID in .holder) when another process holds it."""
        try:
            import fcntl
        except ImportError:  # not POSIX: run unlocked
            return
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 32).decode("ascii", "replace").strip()
                self.holder = int(text) if text.isdigit() else None
                os.close(fd)
                raise
            try:  # the holder may have unlinked the file between our open and flock: then lock the new one
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return
            os.close(fd)
        raise BlockingIOError(f"{self.path} keeps being replaced")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked: a waiter then sees a changed inode and retries
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


# -- reading what a previous run left -------------------------------------------------------------
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
