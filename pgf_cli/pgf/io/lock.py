"""One writer per output: an exclusive lock on `OUT.lock`, held for the whole run.

The lock is an advisory `flock` on a small file beside the output that names its holder (host,
process, start time). The kernel releases it when the holding process ends however it ends, so a
lock left behind by a killed run is simply free: the next run takes it over (and rewrites the
holder). Local filesystems and NFSv4 (Linux emulates flock with NFS byte-range locks) honour it;
a filesystem without working locks (some FUSE mounts, NFSv3 without lockd) makes it a no-op, so
there, do not start two runs on one output. Without `fcntl` (Windows) there is no lock.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pgf.errors import OutputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def lock_path(output: str | Path) -> Path:
    """The lock file of `output`: `OUT.lock` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {holder.get('started', '?')})"


def _locked(path: Path, output: str | Path) -> int:
    """An open descriptor of `path` holding its lock. A lock file that a finishing run unlinked while we
    opened it is not the lock any more: then try the new file."""
    while True:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot create the lock file {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise OutputError(f"{output} is being written by another pgf run: {_holder(path)}; wait for it to finish "
                              "or stop it (a run that was killed holds no lock)") from None
        except OSError:  # a filesystem without locks: run without one (see the module docstring)
            return handle
        try:
            same = os.fstat(handle).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        os.close(handle)


@contextmanager
def exclusive_output(output: str | Path) -> Iterator[None]:
    """Hold the lock of `output` inside the block; an `OutputError` naming the holder when another run has it."""
    path = lock_path(output)
    if fcntl is None:
        yield
        return
    handle = _locked(path, output)
    try:
        holder = {"host": platform.node(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            os.ftruncate(handle, 0)
            os.pwrite(handle, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the holder goes unnamed
            pass
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # still held: no other run can have taken it meanwhile
    finally:
        os.close(handle)
