"""Atomic output files: write to a hidden temporary file beside the target, then rename.

A reader never sees a half-written output, a failed run leaves nothing behind,
and an existing file is replaced only with `force` and only on success.
"""

from __future__ import annotations

import os
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


class CommitOrAbort:
    """An output as a context: `commit()` when the block succeeds, `abort()` when it (or the commit) fails."""

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
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
