"""An advisory lock on a file that may be gone when the holder dies: flock on a sidecar holding the PID."""

from __future__ import annotations

import os


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
