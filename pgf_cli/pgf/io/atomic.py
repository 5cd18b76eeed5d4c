"""Atomic output files: write to a hidden temporary file beside the target, then rename.

A reader never sees a half-written output, a failed run leaves nothing behind,
and an existing file is replaced only with `force` and only on success.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

from pgf.errors import OutputError


def check_output_path(path: str | Path, force: bool = False) -> Path:
    """Raise `OutputError` unless `path` can be written (cheap; call before long work)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a directory")
    if path.exists() and not force:
        raise OutputError(f"output {path} already exists (use --force to overwrite it)")
    if not path.parent.is_dir():
        raise OutputError(f"output folder {path.parent} does not exist")
    return path


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtomicOutput:
    """A temporary file in the output's folder that becomes `path` on `commit()`."""

    def __init__(self, path: str | Path, force: bool = False):
        self.path = check_output_path(path, force)
        folder = self.path.parent
        try:
            handle, name = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".part")
        except OSError as exc:
            raise OutputError(f"cannot write in {folder}: {exc.strerror or exc}") from None
        os.close(handle)
        self.temp_path = Path(name)
        self.done = False

    def commit(self) -> None:
        """Move the finished temporary file onto the output path.

        `mkstemp` creates the file private (0600); the output gets the usual
        permissions of a new file (0666 less the umask) instead.
        """
        os.chmod(self.temp_path, 0o666 & ~_umask())
        os.replace(self.temp_path, self.path)
        self.done = True

    def abort(self) -> None:
        """Remove the temporary file; the output path is left as it was."""
        if not self.done:
            self.temp_path.unlink(missing_ok=True)
            self.done = True


# errors of the disk rather than of pgf: a full disk, a quota, a read-only or failing device
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}
_ERRNO_IN_MESSAGE = re.compile(r"errno = (\d+)")  # how HDF5 reports the system error under h5py's exceptions


def write_failure(exc: BaseException, path: str | Path) -> OutputError | None:
    """A one-line `OutputError` naming `path` and the cause when `exc` is the disk failing a write
    (as OSError, or as h5py's RuntimeError/OSError quoting HDF5's 'errno = N'); None otherwise."""
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    number = getattr(exc, "errno", None)
    if number not in WRITE_FAILURES:
        match = _ERRNO_IN_MESSAGE.search(str(exc))
        number = int(match.group(1)) if match else None
    if number not in WRITE_FAILURES:
        return None
    return OutputError(f"cannot write {path}: {os.strerror(number)}")


class CommitOrAbort:
    """An output as a context: `commit()` when the block succeeds, `abort()` when it (or the commit) fails.

    A write the disk fails (full, quota, read-only) becomes a one-line `OutputError` naming `target`."""

    target: str | Path = "the output"

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException as failure:
                self.abort()
                error = write_failure(failure, self.target)
                if error is not None:
                    raise error from None
                raise
        else:
            self.abort()
            error = write_failure(exc, self.target)
            if error is not None:
                raise error from None
