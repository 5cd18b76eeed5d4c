"""What a `pgf attribute` run records and writes: its identity (what --resume must match), its
provenance, the --log-json lines, the partial output's fate when a run fails, and OUT itself.

Below pgf.workflows.attribute; imports no other attribute module.
"""

from __future__ import annotations

import hashlib
import json
import platform
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from pgf.io.assemble import stored_regions, write_hdf5, write_intervals
from pgf.io.genome import Genome
from pgf.io.partial import PartialStore, regions_hash
from pgf.io.regions import Region
from pgf.io.tracks import RunMetadata
from pgf.io.writers import TrackLabel
from pgf.workflows.attribute_request import AttributeRequest
from pgf.workflows.common import RegionSummary, Reporter
from pgf.workflows.interpret import effective_options
from pgf.workflows.interpret import identity as method_identity


class RunStopped(KeyboardInterrupt):
    """Interrupted (SIGINT/SIGTERM) after `saved` of `total` regions were stored in `partial`."""

    def __init__(self, signum: int, saved: int, total: int, partial: Path):
        super().__init__(f"stopped after {saved} of {total} regions")
        self.signum, self.saved, self.total, self.partial = signum, saved, total, partial


def now() -> str:
    """The local time as stored in provenance and log lines."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def run_identity(request: AttributeRequest, metadata: RunMetadata, regions: list[Region]) -> dict[str, object]:
    """What makes two runs compute the same partial output (refused on --resume when it differs)."""
    return {
        "tool_version": metadata.tool_version,
        "fasta_index_sha256": _file_sha256(Path(f"{request.fasta}.fai")),
        "model_id": metadata.model_id,
        "model_checksum": metadata.model_checksum,
        "model_revision": metadata.model_revision,
        "target": metadata.target,
        "method": metadata.method,
        "method_options": method_identity(effective_options(request.method, request.method_options)),
        "dtype": metadata.dtype,
        "engine": metadata.engine,
        "kernels": request.kernels,
        "tile": request.tile,
        "window": request.window,
        "stride": request.stride,
        "regions": len(regions),
        "regions_sha256": regions_hash(regions),
    }


def provenance(request: AttributeRequest, genome: Genome, identity: dict, device: str, started: str) -> dict[str, object]:
    """Where and how the run was made (stored beside the metadata in OUT)."""
    return {
        "command_line": request.command_line or "",
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "host": platform.node(),
        "device": device,
        "started": started,
        "fasta": str(request.fasta),
        "fasta_index_sha256": identity["fasta_index_sha256"],
        "regions_sha256": identity["regions_sha256"],
        "shard": request.shard or "",
        "chrom_names": list(genome.chrom_sizes),
        "chrom_lengths": list(genome.chrom_sizes.values()),
    }


class JsonLog:
    """--log-json: one JSON line per finished region, appended and flushed as it ends."""

    def __init__(self, path: Path | None, device: str):
        self.handle = open(path, "a") if path is not None else None
        self.device = device

    def write(self, summary: RegionSummary, device: str | None = None) -> None:
        if self.handle is None:
            return
        region = summary.region
        record = {
            "region": region.to_string(), "name": region.name, "bp": len(region), "seconds": round(summary.seconds, 6),
            "bp_per_s": round(len(region) * summary.batch / summary.seconds, 1) if summary.seconds > 0 else None,
            "batch": summary.batch, "peak_memory_bytes": summary.peak_memory_bytes, "memory_kind": summary.memory_kind,
            "device": device or self.device, "target_value": None if summary.target_value != summary.target_value else summary.target_value,
            "finished": now(),
        }
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


@contextmanager
def keeping_partial(store: PartialStore, resumed: bool, total: int, reporter: Reporter) -> Iterator[None]:
    """Inside: the run computes into `store`. An interrupt becomes `RunStopped` (saved regions are kept);
    any other error keeps what was saved (with a hint to --resume). A new run that saved nothing leaves no folder."""
    try:
        yield
    except KeyboardInterrupt as exc:
        saved = len(store.completed())
        if saved == 0 and not resumed:
            store.remove()
            raise
        raise RunStopped(getattr(exc, "signum", signal.SIGINT), saved, total, store.folder) from None
    except BaseException:
        saved = len(store.completed()) if store.folder.is_dir() else 0
        if saved == 0 and not resumed:
            store.remove()
        elif saved:
            reporter.warn(f"{saved} of {total} regions are kept in {store.folder}; "
                          "fix the cause and rerun the same command with --resume to finish")
        raise


def write_output(request: AttributeRequest, fmt: str, store: PartialStore, metadata: RunMetadata,
                 provenance: dict[str, object], chrom_sizes: dict[str, int], expected: int) -> None:
    """The partial output becomes OUT (HDF5 copied group by group; bedGraph/bigWig converted); then it is removed."""
    stored = stored_regions(store.batch_files())
    if len(stored) != expected:
        raise RuntimeError(f"{store.folder} holds {len(stored)} regions, {expected} expected")
    root = {**metadata.attributes(), **provenance}
    if fmt == "h5":
        write_hdf5(Path(request.output), stored, root, request.force)
    else:
        label = TrackLabel(
            f"pgf {metadata.method}",
            f"pgf {metadata.tool_version} {metadata.method} of {metadata.target}, model {metadata.model_id}",
        )
        comments = [f"{key}: {value}" for key, value in root.items()
                    if key not in ("chrom_names", "chrom_lengths") and value not in ("", None)]
        write_intervals(Path(request.output), fmt, stored, chrom_sizes, label, comments, request.force, request.overlap)
    store.remove()
