"""TF-MoDISco (modisco-lite) hand-off: one-hot and hypothetical contributions as .npz, plus a BED.

`modisco motifs -s PREFIX.ohe.npz -a PREFIX.hyp.npz -w W` reads each file as
`np.load(path)["arr_0"]` (saved positionally), arrays (N, 4, L) with the bases
in A C G T order along axis 1 and length last; all examples the same length;
it slices the central W positions (W even, ≤ L) and multiplies the
hypothetical contributions by the one-hot itself. Row i of PREFIX.bed (chrom,
start, end, name; 0-based half-open, genome coordinates) is example i, so
`modisco seqlet-bed` (which centres each example on (start + end) // 2) maps
seqlets back to the genome.

Hypothetical contributions: the `hypothetical` dataset of a `pgf attribute`
output when present, else the gradient minus its mean over the 4 bases
(or any other (L, 4) dataset named by the caller, minus its mean; NaN → 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pgf.errors import OutputError, PgfUserError
from pgf.io.atomic import AtomicOutput, check_output_path

SUFFIXES = (".ohe.npz", ".hyp.npz", ".bed")


@dataclass
class AttributionRecord:
    """One region of a `pgf attribute` HDF5 output."""

    name: str
    chrom: str
    start: int  # 0-based genome coordinate of onehot[0]
    onehot: np.ndarray  # (L, 4) uint8
    hypothetical: np.ndarray  # (L, 4) float32
    score: np.ndarray  # (L,) float32


def read_attributions(path: str | Path, dataset: str | None = None) -> list[AttributionRecord]:
    """Every region group of a `pgf attribute` HDF5 file, with hypothetical contributions
    from `dataset` (default: `hypothetical`, else `gradient`) minus its mean over bases."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise PgfUserError(f"cannot read {path} as HDF5: {exc}") from None
    records = []
    with handle:
        for name, group in handle.items():
            if not isinstance(group, h5py.Group) or "onehot" not in group or "gradient" not in group:
                continue
            source = dataset or ("hypothetical" if "hypothetical" in group else "gradient")
            if source not in group:
                raise PgfUserError(f"{path}: region {name} has no dataset {source!r} (it has: {', '.join(group)})")
            values = np.nan_to_num(np.asarray(group[source][:], dtype=np.float64))
            if values.ndim != 2 or values.shape[1] != 4:
                raise PgfUserError(f"{path}: dataset {source!r} of {name} is {values.shape}, not (L, 4)")
            if source != "hypothetical":
                values = values - values.mean(axis=1, keepdims=True)
            score = group["score"][:] if "score" in group else np.abs(values).sum(axis=1)
            records.append(AttributionRecord(
                name=str(group.attrs.get("name", name)), chrom=str(group.attrs["chrom"]), start=int(group.attrs["start"]),
                onehot=np.asarray(group["onehot"][:], dtype=np.uint8), hypothetical=values.astype(np.float32),
                score=np.asarray(score, dtype=np.float32),
            ))
    if not records:
        raise PgfUserError(f"{path} holds no attribution regions (groups with onehot and gradient datasets)")
    return records


def output_paths(prefix: str | Path) -> list[Path]:
    return [Path(f"{prefix}{suffix}") for suffix in SUFFIXES]


def write_modisco_inputs(prefix: str | Path, onehot: np.ndarray, hypothetical: np.ndarray,
                         bed_rows: Sequence[tuple[str, int, int, str]], force: bool = False) -> list[Path]:
    """Write PREFIX.ohe.npz, PREFIX.hyp.npz ((N, 4, W) float32, key arr_0) and PREFIX.bed atomically."""
    if onehot.shape != hypothetical.shape or onehot.ndim != 3 or onehot.shape[1] != 4 or len(bed_rows) != onehot.shape[0]:
        raise ValueError("onehot and hypothetical must both be (N, 4, W) with one BED row per example")
    paths = output_paths(prefix)
    for path in paths:
        check_output_path(path, force)
    outputs = []
    try:
        for path, array in zip(paths[:2], (onehot, hypothetical)):
            output = AtomicOutput(path, force)
            outputs.append(output)
            with open(output.temp_path, "wb") as handle:
                np.savez_compressed(handle, np.ascontiguousarray(array, dtype=np.float32))
        output = AtomicOutput(paths[2], force)
        outputs.append(output)
        with open(output.temp_path, "w") as handle:
            handle.writelines(f"{chrom}\t{start}\t{end}\t{name}\n" for chrom, start, end, name in bed_rows)
    except OSError as exc:
        for output in outputs:
            output.abort()
        raise OutputError(f"cannot write {prefix}.*: {exc}") from None
    except BaseException:
        for output in outputs:
            output.abort()
        raise
    for output in outputs:
        output.commit()
    return paths
