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
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from pgf.errors import OutputError
from pgf.io.atomic import write_failure
from pgf.io.batch_file import DIGEST_CHARS, BatchFile, file_digest, fsync_folder
from pgf.io.regions import Region
from pgf.io.tracks import AttributionTrack, write_track_group

IDENTITY_FILE = "identity.json"
BATCH_PREFIX = "batch-"


def partial_path(output: str | Path) -> Path:
    """The partial folder of `output`: `OUT.partial` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".partial")


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
            fsync_folder(folder)
            fsync_folder(folder.parent)
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
            fsync_folder(self.folder)
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
        except BaseException:  # a stop (SIGTERM, Ctrl-C) while writing: leave no temporary behind
            temporary.unlink(missing_ok=True)
            raise
        fsync_folder(final.parent)
        return final

    def stream(self, index: int) -> "BatchFile":
        """A batch file to fill piece by piece (a long windowed region); committed on success."""
        _, temporary = self._paths(index)
        return BatchFile(lambda digest: self._paths(index, digest)[0], temporary)


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
