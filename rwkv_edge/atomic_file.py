"""Create a file atomically: it appears complete under its name, or not at all.

Every writer of rwkv-edge (model files, state files, reports) goes through
``atomic_output``. On Linux the data goes to an unnamed file (``O_TMPFILE``) in
the destination's directory, linked into place only once it is complete and
fsynced: a writer killed at any point, even by SIGKILL, leaves nothing behind.
Where ``O_TMPFILE`` (or ``/proc``) is missing, a hidden temp file beside the
destination is renamed into place and removed on any error; only a SIGKILL
can then leave it behind.

An existing destination is replaced by a rename, never rewritten in place:
a process that has the old file mapped keeps reading the old bytes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import IoError


def _open_unnamed(directory: Path) -> int | None:
    """An O_TMPFILE descriptor in ``directory`` that /proc can name, or None."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:  # a filesystem without O_TMPFILE support (EOPNOTSUPP, EISDIR, ...)
        return None


def fsync_dir(d: Path) -> None:
    """Make a rename or link in ``d`` durable; a platform that cannot open dirs skips it."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicOutput:
    """The file being written (``file``); ``path`` names it for code that reopens it."""

    def __init__(self, dst: Path) -> None:
        self.dst = dst
        self._temp: Path | None = None
        fd = _open_unnamed(dst.parent)
        if fd is None:
            fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
            self._temp = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "w+b")

    @property
    def path(self) -> str:
        """A path that opens this same file (``/proc/self/fd/N`` for an unnamed one)."""
        return str(self._temp) if self._temp else f"/proc/self/fd/{self.file.fileno()}"

    def commit(self, overwrite: bool) -> None:
        """fsync, then give the file its name; ``overwrite=False`` never clobbers."""
        self.file.flush()
        os.fsync(self.file.fileno())
        if self._temp is None:
            if overwrite:  # link under a fresh hidden name, then rename over dst
                side = self.dst.with_name(f".{self.dst.name}.{secrets.token_hex(6)}.tmp")
                self._link_unnamed(side)
                try:
                    os.replace(side, self.dst)
                except BaseException:
                    side.unlink(missing_ok=True)
                    raise
            else:
                self._link_unnamed(self.dst)  # FileExistsError if dst appeared meanwhile
        elif overwrite:
            os.replace(self._temp, self.dst)
            self._temp = None
        else:
            os.link(self._temp, self.dst)
        fsync_dir(self.dst.parent)

    def _link_unnamed(self, name: Path) -> None:
        # linkat(/proc/self/fd/N, AT_SYMLINK_FOLLOW), the unprivileged way to name an
        # O_TMPFILE file. os.link only passes the flag to linkat when a dir fd is given
        # (else it calls link(), which would link the /proc symlink: EXDEV).
        procfd = os.open("/proc/self/fd", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.link(str(self.file.fileno()), name, src_dir_fd=procfd, follow_symlinks=True)
        finally:
            os.close(procfd)

    def discard(self) -> None:
        """Close; remove the temp file if it still has a name. Safe to call twice."""
        self.file.close()
        if self._temp is not None:
            with contextlib.suppress(OSError):
                self._temp.unlink()
            self._temp = None


@contextlib.contextmanager
def atomic_output(dst: str | os.PathLike[str], *, overwrite: bool) -> Iterator[AtomicOutput]:
    """Write ``dst`` through the yielded AtomicOutput; it is committed when the block ends
    without an exception and discarded otherwise (KeyboardInterrupt included)."""
    p = Path(dst)
    if not p.parent.is_dir():
        raise IoError(f"directory {p.parent} does not exist")
    exists = f"{p} already exists; pass overwrite=True (--force) to replace it"
    if p.exists() and not overwrite:
        raise IoError(exists)
    try:
        out = AtomicOutput(p)
    except OSError as e:
        raise IoError(f"cannot write {p}: {e.strerror or e}") from None
    try:
        yield out
        try:
            out.commit(overwrite)
        except FileExistsError:
            raise IoError(exists) from None
        except OSError as e:
            raise IoError(f"cannot write {p}: {e.strerror or e}") from None
    finally:
        out.discard()
