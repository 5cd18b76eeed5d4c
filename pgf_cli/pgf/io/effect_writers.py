"""The files `pgf effect` writes: HDF5 effect tracks, a TSV summary, one variant's track.

Like the attribution writers, each file is written into a temporary file and
renamed only when complete (see `pgf.io.atomic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pgf.io.atomic import AtomicOutput
from pgf.io.onehot import BASES
from pgf.io.regions import Region
from pgf.io.tracks import RunMetadata
from pgf.io.variants import Variant
from pgf.io.writers import TrackLabel, open_writer


@dataclass(frozen=True)
class Perturbation:
    """A named input direction at one position: a variant, or a unit impulse on one base."""

    name: str
    position: int  # 0-based genome coordinate
    ref_index: int | None  # base removed (variants), None for impulses
    alt_index: int
    variant: Variant | None = None


@dataclass
class EffectResult:
    """One perturbation's effect on every output position and channel."""

    perturbation: Perturbation
    linear: np.ndarray | None  # (L, C)
    exact: np.ndarray | None  # (L, C)


def _statistics(values: np.ndarray, region: Region) -> tuple[float, float, int]:
    """(sum, max |value|, 1-based position of the max)."""
    index = int(np.argmax(np.abs(values)))
    return float(values.sum()), float(abs(values[index])), region.start + index + 1


def write_effect_hdf5(
    path: Path, force: bool, metadata: Mapping[str, object], baseline: np.ndarray, results: list[EffectResult]
) -> None:
    """Run attributes, the reference output, then one group per perturbation with its effect datasets."""
    output = AtomicOutput(path, force=force)
    try:
        with h5py.File(output.temp_path, "w") as h5:
            for key, value in metadata.items():
                h5.attrs[key] = value
            h5.create_dataset("reference_output", data=baseline.astype(np.float32))
            for result in results:
                group = h5.create_group(result.perturbation.name.replace("/", "%2F"))
                p = result.perturbation
                group.attrs["position"] = p.position + 1
                if p.variant is not None:
                    group.attrs.update({"chrom": p.variant.chrom, "ref": p.variant.ref, "alt": p.variant.alt, "id": p.variant.id or ""})
                else:
                    group.attrs.update({"impulse_base": BASES[p.alt_index]})
                for mode in ("linear", "exact"):
                    values = getattr(result, mode)
                    if values is not None:
                        group.create_dataset(mode, data=values.astype(np.float32), compression="gzip", shuffle=True)
        output.commit()
    finally:
        output.abort()


def write_effect_summary(
    path: Path, force: bool, region: Region, results: list[EffectResult], channel: int, channels: list[str]
) -> None:
    """One TSV row per perturbation: its sum, largest |effect| and where, on one channel, per mode."""
    modes = [m for m in ("linear", "exact") if getattr(results[0], m) is not None]
    header = ["variant", "id", "chrom", "pos", "ref", "alt"]
    for mode in modes:
        header += [f"{mode}_sum", f"{mode}_max_abs", f"{mode}_max_abs_pos"]
    output = AtomicOutput(path, force=force)
    try:
        with open(output.temp_path, "w") as handle:
            handle.write(f"# channel: {channels[channel]}; positions 1-based\n")
            handle.write("\t".join(header) + "\n")
            for result in results:
                p = result.perturbation
                ref = p.variant.ref if p.variant else "."
                row = [p.name, (p.variant.id or ".") if p.variant else ".", region.chrom, str(p.position + 1), ref, BASES[p.alt_index]]
                for mode in modes:
                    total, peak, where = _statistics(getattr(result, mode)[:, channel], region)
                    row += [f"{total:.9g}", f"{peak:.9g}", str(where)]
                handle.write("\t".join(row) + "\n")
        output.commit()
    finally:
        output.abort()


def write_effect_track(
    path: Path,
    fmt: str,
    force: bool,
    chrom_sizes: Mapping[str, int],
    region: Region,
    result: EffectResult,
    channel: int,
    channels: list[str],
    metadata: RunMetadata,
) -> None:
    """One perturbation's effect (linear when computed, else exact) on one channel, as bedGraph or bigWig.

    `metadata.target` describes the output tracked; the track line names the perturbation.
    """
    values = (result.linear if result.linear is not None else result.exact)[:, channel]
    name = result.perturbation.name
    label = TrackLabel(
        f"pgf effect {name}",
        f"pgf {metadata.tool_version} effect of {name} on {metadata.target} {channels[channel]}, model {metadata.model_id}",
    )
    with open_writer(path, fmt, metadata, chrom_sizes, force=force, label=label) as writer:
        writer.add_values(region, values)
