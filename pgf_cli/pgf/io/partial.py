"""Partial outputs: completed batches on disk as they finish, resumable after any stop.

`OUT.partial/` (a visible folder beside OUT) holds `identity.json` (what the
run computes: inputs, model, target, method, dtype, windowing, the region
list's hash, tool version) and one small HDF5 file per completed batch,
`batch-NNNNNN-RUN-DIGEST.h5`, in the final output's group layout (DIGEST: the
start of the file's sha256). A batch file is written under a hidden temporary
name, fsync'ed, and renamed into place (then the folder is fsync'ed), so a batch
file that exists is complete: a SIGKILL at any moment loses at most the batches
in flight. A resumed run checks every batch file against its DIGEST (a truncated
or changed file is removed and its regions computed again) and every stored
region's `bases_sha256` against the FASTA it runs on. Several worker processes may
write batch files into one folder at once (each batch index has one file).
On success the batch files become OUT (see `pgf.io.finalize`) and the folder
is removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import numpy as np

from pgf.errors import OutputError
from pgf.io.atomic import CommitOrAbort, write_failure
from pgf.io.regions import Region
from pgf.io.tracks import AttributionTrack, dataset_options, region_group_name, write_track_group

IDENTITY_FILE = "identity.json"
BATCH_PREFIX = "batch-"
DIGEST_CHARS = 16  # of the sha256 in a batch file's name


def file_digest(path: Path) -> str:
    """The start of `path`'s sha256 (as batch file names carry it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:DIGEST_CHARS]


def partial_path(output: str | Path) -> Path:
    """The partial folder of `output`: `OUT.partial` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".partial")


def _fsync_folder(folder: Path) -> None:
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


def _differences(stored: Mapping[str, object], wanted: Mapping[str, object]) -> list[str]:
    names = sorted(set(stored) | set(wanted))
    return [
        f"{name} {_short(stored.get(name))} there, {_short(wanted.get(name))} now"
        for name in names
        if stored.get(name) != wanted.get(name)
    ]


def _short(value: object) -> str:
    text = "(none)" if value is None else str(value)
    return text[:16] + "…" if len(text) > 20 else text


class PartialStore:
    """The batch files of one run in `OUT.partial/`."""

    def __init__(self, folder: Path, identity: Mapping[str, object], attributes: Mapping[str, object], token: str | None = None):
        self.folder = folder
        self.identity = dict(identity)
        self.attributes = dict(attributes)  # written on every region group (the run metadata)
        # in every batch file name of this run (its workers included): a resumed run may batch the
        # remaining regions differently, and must never replace an earlier run's batch file
        self.token = token or secrets.token_hex(4)

    @classmethod
    def open(
        cls,
        output: str | Path,
        identity: Mapping[str, object],
        attributes: Mapping[str, object],
        resume: bool = False,
        force: bool = False,
    ) -> tuple["PartialStore", bool]:
        """Create `OUT.partial`, or with `resume` reopen it; returns (store, resumed).

        An existing folder without `resume` is an error naming --resume and
        --force (which discards it); with `resume`, a folder written by a
        different run is refused, naming what differs.
        """
        folder = partial_path(output)
        store = cls(folder, identity, attributes)
        if folder.exists():
            if not folder.is_dir() or not (folder / IDENTITY_FILE).is_file():
                if not force:
                    raise OutputError(f"{folder} exists and is not a pgf partial output; remove it or use --force")
                store.remove()
            elif resume:
                store._check_identity()
                store.remove_temporaries()
                return store, True
            elif force:
                store.remove()
            else:
                raise OutputError(
                    f"a partial output of an earlier run exists: {folder} ({len(store.batch_files())} batches done); "
                    "use --resume to continue it or --force to start again"
                )
        try:
            folder.mkdir()
            text = json.dumps(store.identity, indent=1, sort_keys=True)
            temporary = folder / f".{IDENTITY_FILE}.tmp"
            with open(temporary, "w") as handle:
                handle.write(text + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, folder / IDENTITY_FILE)
            _fsync_folder(folder)
            _fsync_folder(folder.parent)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise OutputError(f"cannot create {folder}: {exc.strerror or exc}") from None
        return store, False

    def _check_identity(self) -> None:
        try:
            stored = json.loads((self.folder / IDENTITY_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot read {self.folder / IDENTITY_FILE}: {exc}; use --force to start again") from None
        differences = _differences(stored, self.identity)
        if differences:
            raise OutputError(
                f"{self.folder} was written by a different run ({'; '.join(differences)}); "
                "rerun with the same inputs and options to resume it, or use --force to start again"
            )

    # ------------------------------------------------------------------ reading

    def batch_files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.name.startswith(BATCH_PREFIX) and p.suffix == ".h5")

    def completed(self) -> set[str]:
        """Group names (region coordinates) of every region in a batch file."""
        return set(self.stored_bases())

    def stored_bases(self) -> dict[str, str | None]:
        """Group name -> `bases_sha256` of every region in a batch file (None: not recorded)."""
        bases: dict[str, str | None] = {}
        for path in self.batch_files():
            with h5py.File(path, "r") as handle:
                for name, group in handle.items():
                    value = group.attrs.get("bases_sha256")
                    bases[name] = value.decode() if isinstance(value, bytes) else value
        return bases

    def remove_damaged(self) -> list[Path]:
        """Remove every batch file that is not as it was written (its content no longer matches the digest
        in its name: truncated, changed) or cannot be read as HDF5; returns them (their regions are to be
        computed again)."""
        damaged = []
        for path in self.batch_files():
            parts = path.stem.split("-")
            try:
                intact = file_digest(path) == parts[3] if len(parts) == 4 else h5py.is_hdf5(path)
                if intact:
                    with h5py.File(path, "r") as handle:
                        list(handle.keys())
            except OSError:
                intact = False
            if not intact:
                path.unlink(missing_ok=True)
                damaged.append(path)
        if damaged:
            _fsync_folder(self.folder)
        return damaged

    def has_batch(self, index: int) -> bool:
        """Whether batch `index` was committed (its file is only ever complete)."""
        return any(self.folder.glob(f"{BATCH_PREFIX}{index:06d}-{self.token}-*.h5"))

    def remove_temporaries(self) -> None:
        for path in self.folder.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder.exists() and not self.folder.is_dir():
            self.folder.unlink()

    # ------------------------------------------------------------------ writing

    def _paths(self, index: int, digest: str = "") -> tuple[Path, Path]:
        """(final path with `digest`, temporary path) of batch `index`."""
        name = f"{BATCH_PREFIX}{index:06d}-{self.token}"
        return self.folder / f"{name}-{digest}.h5", self.folder / f".{name}.h5.{os.getpid()}.tmp"

    def write_batch(self, index: int, tracks: list[AttributionTrack]) -> Path:
        """Write batch `index` (complete tracks) atomically and durably.

        The batch is built in memory and written to disk as plain bytes: a disk that fails the write
        (full, quota) then fails a plain `write`, a clean `OutputError`, where HDF5 writing to a
        full disk is left in a state that crashes the process."""
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as image:
            for track in tracks:
                write_track_group(image, track, self.attributes)
        final, temporary = self._paths(index, hashlib.sha256(buffer.getbuffer()).hexdigest()[:DIGEST_CHARS])
        try:
            with open(temporary, "wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise write_failure(exc, final) or OutputError(f"cannot write {final}: {exc.strerror or exc}") from None
        _fsync_folder(final.parent)
        return final

    def stream(self, index: int) -> "BatchFile":
        """A batch file to fill piece by piece (a long windowed region); committed on success."""
        _, temporary = self._paths(index)
        return BatchFile(lambda digest: self._paths(index, digest)[0], temporary)


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
        _fsync_folder(self.final.parent)

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


def regions_hash(regions: list[Region]) -> str:
    """sha256 of the region list (coordinates and names, in order)."""
    import hashlib

    digest = hashlib.sha256()
    for region in regions:
        digest.update(f"{region.chrom}\t{region.start}\t{region.end}\t{region.name or ''}\n".encode())
    return digest.hexdigest()


def as_attribute(value: object) -> object:
    """An HDF5-storable form of a provenance value (None becomes '')."""
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)  # a str subclass (torch's version string) would not convert
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, np.integer)) for v in value):
            return np.array(value, dtype=np.int64)
        return np.array([str(v) for v in value], dtype=h5py.string_dtype())
    return value
