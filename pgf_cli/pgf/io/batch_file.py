"""Files of a partial output: a batch file filled piece by piece, durably; the digest its name carries.

A batch file is written under its temporary name through a `GuardedFile` (a failed write is
recorded, not shown to HDF5, which a full disk would leave in a state that crashes the process)
and renamed into place with the start of its sha256 in its name once complete and fsync'ed.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import numpy as np

from pgf.errors import OutputError
from pgf.io.atomic import CommitOrAbort, write_failure
from pgf.io.regions import Region
from pgf.io.tracks import dataset_options, region_group_name

DIGEST_CHARS = 16  # of the sha256 in a batch file's name


def fsync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems (and Windows) cannot open folders
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def file_digest(path: Path) -> str:
    """The start of `path`'s sha256 (as batch file names carry it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:DIGEST_CHARS]


class GuardedFile(io.RawIOBase):
    """A file for HDF5 (h5py's file-object driver) whose failed writes are recorded, not raised: HDF5
    that sees a write fail (a full disk) is left in a state that crashes the process when it frees
    the file. HDF5 goes on as if the write had succeeded; the writer checks `failure` at its next
    step (`BatchFile.check`) and stops there with a clean error."""

    def __init__(self, path: Path):
        super().__init__()
        self.handle = open(path, "w+b")
        self.failure: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.handle.readinto(buffer)

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if self.failure is None:
            try:
                self.handle.write(data)
            except OSError as exc:
                self.failure = exc
        return size

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.failure is None:
            try:
                return self.handle.truncate(size)
            except OSError as exc:
                self.failure = exc
        return self.tell() if size is None else size

    def flush(self) -> None:
        if self.failure is None and not self.handle.closed:
            try:
                self.handle.flush()
            except OSError as exc:
                self.failure = exc

    def close(self) -> None:
        if self.handle.closed:
            return
        self.flush()
        try:
            self.handle.close()
        except OSError as exc:
            self.failure = self.failure or exc
        super().close()


class BatchFile(CommitOrAbort):
    """One batch file under its temporary name; renamed into place by a successful `with`. Filled piece by
    piece (a whole chromosome's windows), it is written through a `GuardedFile`: a disk that fails a write
    stops the batch at its next `check` with a one-line `OutputError`."""

    def __init__(self, final: Callable[[str], Path], temporary: Path):
        self.named = final  # the final path for a digest of the content
        self.final = final("")
        self.target = self.final.parent
        self.temporary = temporary
        try:
            self.guarded = GuardedFile(temporary)
            self.file = h5py.File(self.guarded, "w")
        except OSError as exc:
            raise OutputError(f"cannot write in {self.final.parent}: {exc.strerror or exc}") from None

    def check(self) -> None:
        """Raise the failure of a write since the batch began, if any (as an `OutputError`)."""
        if self.guarded.failure is not None:
            raise write_failure(self.guarded.failure, self.final.parent) or self.guarded.failure

    def create_region(self, region: Region, attributes: Mapping[str, object]) -> h5py.Group:
        group = self.file.create_group(region_group_name(region))
        group.attrs["chrom"] = region.chrom
        group.attrs["start"] = region.start
        group.attrs["end"] = region.end
        if region.name is not None:
            group.attrs["name"] = region.name
        return group

    def commit(self) -> None:
        self.file.close()
        self.guarded.close()
        self.check()
        with open(self.temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        self.final = self.named(file_digest(self.temporary))
        os.replace(self.temporary, self.final)
        fsync_folder(self.final.parent)

    def abort(self) -> None:
        if not self.guarded.handle.closed:
            try:
                self.guarded.handle.truncate(0)  # give the space back
            except OSError:
                pass
        try:
            self.file.close()
        except Exception:
            pass
        self.guarded.close()
        self.temporary.unlink(missing_ok=True)


class RegionStream:
    """The per-base datasets of one region written piece by piece, in order, in whole HDF5 chunks.

    Pieces (consecutive rows of every dataset) are buffered until a chunk of
    `rows` rows is full, so each compressed chunk is written once (never read
    back and rewritten) and memory stays at about one chunk per dataset.
    """

    def __init__(self, group: h5py.Group, length: int, rows: int, check: Callable[[], None] | None = None):
        self.group, self.length, self.rows = group, length, rows
        self.check = check or (lambda: None)  # raises when a write of the batch file failed (BatchFile.check)
        self.datasets: dict[str, h5py.Dataset] = {}
        self.buffers: dict[str, list[np.ndarray]] = {}
        self.written = 0  # rows written to every dataset
        self.buffered = 0  # rows waiting in the buffers
        self.bases = hashlib.sha256()  # of the "onehot" rows, as `bases_sha256` of the whole region

    def add(self, pieces: Mapping[str, np.ndarray], attributes: Mapping[str, Mapping[str, object]]) -> None:
        for key, piece in pieces.items():
            if key not in self.datasets:
                chunks = (min(self.length, self.rows), *piece.shape[1:]) if self.length else None
                self.datasets[key] = self.group.create_dataset(
                    key, shape=(self.length, *piece.shape[1:]), dtype=piece.dtype, chunks=chunks, **dataset_options(self.length)
                )
                for attr, value in attributes.get(key, {}).items():
                    self.datasets[key].attrs[attr] = value
            self.buffers.setdefault(key, []).append(np.asarray(piece))
            if key == "onehot":
                self.bases.update(np.ascontiguousarray(piece, dtype=np.uint8).tobytes())
        self.buffered += len(next(iter(pieces.values())))
        if self.buffered >= self.rows:
            self._flush((self.buffered // self.rows) * self.rows)
            self.check()

    def _flush(self, count: int) -> None:
        for key, parts in self.buffers.items():
            data = np.concatenate(parts) if len(parts) > 1 else parts[0]
            self.datasets[key][self.written : self.written + count] = data[:count]
            self.buffers[key] = [data[count:].copy()] if count < len(data) else []
        self.written += count
        self.buffered -= count

    def close(self) -> None:
        if self.buffered:
            self._flush(self.buffered)
        if self.written != self.length:
            raise RuntimeError(f"streamed {self.written} rows into a region of {self.length}")
        self.group.attrs["bases_sha256"] = self.bases.hexdigest()


