"""OUT of `judge-core score`: checked and locked before the model loads, touched only after it has.

OUT is `-` (stdout), a non-regular file (device, FIFO: written as is), or a regular file, which is
locked (an advisory flock on the sidecar OUT.lock, holding the PID; the kernel drops it when the holder
dies), resumable (rows already in OUT, plus finished rows in the journal OUT.partial; score_resume.py
checks them against the input) and never unlinked: --overwrite truncates it in place, --resume truncates a torn tail off.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .file_lock import FileLock
from .score_resume import Existing, ResumeError, scan_previous
from .score_writer import OrderedWriter, OutputError, Sink

__all__ = ["Output", "OutputError", "UsageError"]


class UsageError(Exception):
    """A problem the user fixes on the command line (exit 2), found before anything was written."""


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
        if path.is_dir():
            raise UsageError(f"-o {spec} is a directory; expected a file name")
        if path.exists() and is_special(path):
            if resume:
                raise UsageError(f"--resume: {spec} is not a regular file (a device or pipe); nothing to resume from")
            if not os.access(path, os.W_OK):
                raise UsageError(f"cannot write {spec}: permission denied")
            out.kind = "special"
            return out
        if input_path != "-" and path.exists() and os.path.samefile(input_path, path):
            raise UsageError(f"-o {spec} is the input file")
        if path.exists() and not os.access(path, os.W_OK):
            raise UsageError(f"cannot write {spec}: permission denied")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the directory {path.parent} for {spec}: {e.strerror or e}") from None
        out.lock = FileLock(f"{spec}.lock")
        try:
            out.lock.acquire()  # first: a busy OUT is reported as busy, whatever else is wrong
        except BlockingIOError:
            holder = f" (pid {out.lock.holder})" if out.lock.holder else ""
            raise UsageError(f"{spec} is being written by another `judge-core score`{holder}: wait for it to end, "
                             f"or choose another -o") from None
        except OSError as e:
            raise UsageError(f"cannot write in {path.parent.resolve()} (for {spec} and its .lock, .partial "
                             f"sidecars): {e.strerror or e}") from None
        try:
            out._check_previous(path)
        except BaseException:
            out.abort()
            raise
        return out

    def _check_previous(self, path: Path) -> None:
        journal = Path(self.journal_path)
        left = [p for p in (path, journal) if p.exists() and p.stat().st_size > 0]
        if left and not (self.resume or self.overwrite):
            raise UsageError(f"{left[0]} already exists: pass --resume to continue {self.spec}, "
                             f"or --overwrite to replace it")
        if self.resume:
            try:
                self.existing = scan_previous(path, journal, gz=self.gz)
            except OSError as e:
                raise UsageError(f"--resume: cannot read {e.filename or self.spec}: {e.strerror or e}") from None
            except ResumeError as e:
                raise UsageError(f"--resume: {e}") from None

    # -- after the model loaded --------------------------------------------------------------------
    def open(self) -> OrderedWriter:
        if self.kind == "stdout":
            self.writer = OrderedWriter(Sink(sys.stdout.buffer, "stdout", gz=False, owned=False))
            return self.writer
        if self.kind == "special":
            try:
                stream = open(self.spec, "ab")  # noqa: SIM115 - closed by the sink
            except OSError as e:
                raise OutputError(self.spec, e) from None
            self.writer = OrderedWriter(Sink(stream, self.spec, gz=self.gz))
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
    names = (str(path.absolute()), str(path.resolve()))  # /dev/stdout may resolve to a redirected regular file
    return not stat.S_ISREG(os.stat(path).st_mode) or any(n.startswith(("/dev/", "/proc/")) for n in names)
