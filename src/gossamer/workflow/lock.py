"""The lock of a run directory: one process writes it at a time.

``run`` and ``resume`` (under torchrun, rank 0; with ``ranks=R``, the process that
starts the workers) hold an exclusive ``flock`` on ``<run dir>/.gossamer.lock`` from
before they judge the directory until their last file is written. A second process
(a run and a resume, two runs, a comparison reaching a run being written) stops with
RunDirectoryInUseError, naming the holder, before it touches anything. The lock is
the operating system's: it goes when its process ends, however it ends, so a killed
run never blocks the next one (which takes over the file it left).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from gossamer.config import RunDirectoryError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; run directories are not locked
    fcntl = None


class RunDirectoryInUseError(RunDirectoryError):
    """Another process is writing the run directory."""


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.gossamer.lock``, as a context manager.

    Released, the file is removed (and the directory, if the lock made it and nothing
    else was written there). On a file system without locks, nothing is locked."""

    NAME = ".gossamer.lock"

    def __init__(self, run_dir: Path, what: str):
        self.path, self.what = run_dir / self.NAME, what  # what: the argument, for errors
        self.fd: int | None = None
        self.made_dir = False

    def __enter__(self) -> RunLock:
        if fcntl is None or self.path.parent.is_file():  # the latter: RunWriter says so
            return self
        while self.fd is None:
            try:
                with contextlib.suppress(FileExistsError):
                    self.path.parent.mkdir(parents=True)
                    self.made_dir = True
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as error:
                raise RunDirectoryError(
                    f"{self.what}: cannot write into '{self.path.parent}': {error}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                self._forget_dir()
                raise RunDirectoryInUseError(
                    f"{self.what}: '{self.path.parent}' is in use by another gossamer process "
                    f"({holder}), which holds {self.path.name}; wait for it to finish or "
                    "stop it, or choose another directory"
                ) from None
            except OSError:  # a file system without locks (some network mounts)
                os.close(fd)
                self.path.unlink(missing_ok=True)  # nothing to hold: leave no file
                return self
            try:  # removed by a releasing holder after we opened it: open it anew
                current = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                current = False
            if not current:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while held: no one holds a removed file
            os.close(self.fd)
            self.fd = None
        self._forget_dir()

    def _forget_dir(self) -> None:
        if self.made_dir:
            with contextlib.suppress(OSError):  # not empty: the run wrote there
                self.path.parent.rmdir()

    def clear_stale(self) -> None:
        """Before a run judges the directory's files: RunDirectoryInUseError if it is in
        use; a lock file left by a killed process removed."""
        if self.path.is_file():
            with self:
                pass
