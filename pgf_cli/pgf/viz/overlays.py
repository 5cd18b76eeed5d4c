"""What `pgf plot` and `pgf report` draw over the attributions: BED elements and `pgf effect` tracks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pgf.errors import PgfUserError, RegionError
from pgf.io.regions import Region, read_bed


def read_bed_elements(path: str | Path) -> list[Region]:
    """Every interval of a BED file (chrom, 0-based start, end, optional name), not checked against a genome."""
    return read_bed(path, None)


def overlapping(elements: list[Region], region: Region) -> list[Region]:
    """The elements that overlap `region`."""
    return [e for e in elements if e.chrom == region.chrom and e.start < region.end and e.end > region.start]


@dataclass
class EffectTrack:
    """One perturbation's effect on one output channel along the effect file's region."""

    name: str
    region: Region
    position: int  # 0-based
    values: np.ndarray  # (L,)
    label: str  # e.g. "linear effect on expression"


def read_effect(path: str | Path, variant: str | None = None, channel: str | None = None) -> EffectTrack:
    """A perturbation's track from a `pgf effect` HDF5 file (default: the first, linear when present)."""
    path = Path(path)
    if not path.is_file():
        raise PgfUserError(f"effect file not found: {path}")
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise PgfUserError(f"cannot read {path} as HDF5 (is it a `pgf effect` output?)") from None
    with h5:
        a = h5.attrs
        if "chrom" not in a or "start" not in a:
            raise PgfUserError(f"{path} is not a `pgf effect` output (no region attributes)")
        names = [n for n in h5 if isinstance(h5[n], h5py.Group)]
        if not names:
            raise PgfUserError(f"{path} holds no variants")
        wanted = names[0] if variant is None else variant.replace("/", "%2F")
        if wanted not in names:
            ids = {str(h5[n].attrs.get("id", "")): n for n in names}
            if variant not in ids:
                raise PgfUserError(f"variant {variant!r} is not in {path}; it holds: {', '.join(names[:5])}")
            wanted = ids[variant]
        channels = str(a.get("channels", "")).split(",")
        index = 0 if channel is None else (channels.index(channel) if channel in channels else -1)
        if index < 0:
            raise PgfUserError(f"channel {channel!r} is not in {path}; it holds: {', '.join(channels)}")
        group = h5[wanted]
        mode = "linear" if "linear" in group else "exact"
        values = group[mode][:, index].astype(np.float32)
        region = Region(str(a["chrom"]), int(a["start"]), int(a["end"]))
        return EffectTrack(wanted.replace("%2F", "/"), region, int(group.attrs["position"]) - 1, values,
                           f"{mode} effect on {channels[index]}")
