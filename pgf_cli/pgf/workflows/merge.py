"""`pgf merge`: join the outputs of shards (`pgf attribute --shard K/N`) into one output.

Parts are HDF5 outputs of `pgf attribute`. They must agree on the model
checksum, target, method, dtype, tool version (and FASTA index, when
recorded); a region in two parts is refused. The merged HDF5 holds every
part's groups unchanged; bedGraph/bigWig outputs are converted from them.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import torch

import pgf
from pgf.errors import OutputError, PgfUserError
from pgf.io.assemble import check_no_collisions, stored_regions, write_hdf5, write_intervals
from pgf.io.atomic import check_output_path
from pgf.io.overlaps import DEFAULT_OVERLAP, check_rule
from pgf.io.writers import TrackLabel, resolve_format
from pgf.workflows.common import Reporter, SilentReporter

MUST_AGREE = ("model_checksum", "target", "method", "dtype", "tool_version")
KEPT = ("method", "target", "model_id", "model_checksum", "model_revision", "model_trained", "engine", "dtype", "tool_version")


@dataclass
class MergeRequest:
    parts: list[Path]
    output: Path
    fmt: str | None = None
    force: bool = False
    command_line: str | None = None
    overlap: str = DEFAULT_OVERLAP  # bedGraph/bigWig: one value per base of overlapping regions (pgf.io.overlaps)
    extra: dict = field(default_factory=dict)


def _value(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _root_attributes(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise OutputError(f"part {path} not found")
    if not h5py.is_hdf5(path):
        raise OutputError(f"part {path} is not HDF5; pgf merge joins .h5 outputs of pgf attribute (write shards to .h5)")
    with h5py.File(path, "r") as handle:
        attributes = {key: _value(value) for key, value in handle.attrs.items()}
    missing = [key for key in MUST_AGREE if key not in attributes]
    if missing:
        raise OutputError(f"part {path} has no {', '.join(missing)} attribute; is it an output of pgf attribute?")
    return attributes


def _check_agreement(parts: list[Path], attributes: list[dict[str, object]]) -> None:
    keys = list(MUST_AGREE) + [key for key in ("model_revision", "fasta_index_sha256", "chrom_names", "chrom_lengths")
                                if all(attrs.get(key) not in (None, "") for attrs in attributes)]
    for key in keys:
        for part, attrs in zip(parts[1:], attributes[1:]):
            if attrs[key] != attributes[0][key]:
                raise OutputError(
                    f"parts disagree on {key}: {parts[0]} has {str(attributes[0][key])[:40]!r}, {part} has {str(attrs[key])[:40]!r}"
                )


def _chrom_sizes(attributes: dict[str, object], fmt: str) -> dict[str, int]:
    names, lengths = attributes.get("chrom_names"), attributes.get("chrom_lengths")
    if names in (None, "") or lengths in (None, ""):
        if fmt == "h5":
            return {}
        raise OutputError(f"the parts do not record the sequence sizes a {fmt} output needs; merge to .h5 instead")
    return {str(name): int(length) for name, length in zip(names, lengths)}


def run_merge(request: MergeRequest, reporter: Reporter | None = None) -> tuple[int, int]:
    """Write the merged output; returns (regions, bp)."""
    reporter = reporter or SilentReporter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if not request.parts:
        raise PgfUserError("no parts given: pgf merge PART.h5 ... -o OUT")
    fmt = resolve_format(request.output, request.fmt)
    check_output_path(request.output, request.force)
    output = Path(request.output).resolve()
    parts = [Path(part) for part in request.parts]
    seen: set[Path] = set()
    for part in parts:
        if part.resolve() == output:
            raise OutputError(f"output {request.output} is one of the parts; choose another output path")
        if part.resolve() in seen:
            raise OutputError(f"part {part} is given twice")
        seen.add(part.resolve())
    attributes = [_root_attributes(part) for part in parts]
    _check_agreement(parts, attributes)
    first = attributes[0]
    chrom_sizes = _chrom_sizes(first, fmt)
    stored = stored_regions(parts)
    if chrom_sizes:
        for item in stored:
            if item.region.chrom not in chrom_sizes:
                raise OutputError(f"{item.path}: region {item.group} is on {item.region.chrom}, not in the parts' FASTA index")
    check_no_collisions(stored, fmt, check_rule(request.overlap))
    root: dict[str, object] = {key: first[key] for key in KEPT if key in first}
    root.update(
        command_line=request.command_line or "", merged_from=[str(p) for p in parts],
        part_command_lines=[str(a.get("command_line", "")) for a in attributes],
        torch_version=torch.__version__, python_version=platform.python_version(), host=platform.node(),
        started=started, fasta_index_sha256=first.get("fasta_index_sha256", ""),
    )
    if chrom_sizes:
        root.update(chrom_names=list(chrom_sizes), chrom_lengths=list(chrom_sizes.values()))
    root["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if fmt == "h5":
        write_hdf5(Path(request.output), stored, root, request.force)
    else:
        label = TrackLabel(f"pgf {first['method']}",
                           f"pgf {pgf.__version__} {first['method']} of {first['target']}, model {first.get('model_id', '')}")
        comments = [f"{key}: {value}" for key, value in root.items() if key not in ("chrom_names", "chrom_lengths")]
        write_intervals(Path(request.output), fmt, stored, chrom_sizes, label, comments, request.force, request.overlap)
    return len(stored), sum(len(item.region) for item in stored)
