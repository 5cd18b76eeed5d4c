"""Reading a `pgf attribute` HDF5 file (layout: README "Outputs") for figures and pages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pgf.errors import PgfUserError, RegionError
from pgf.io.regions import Region, parse_region


class AttributionFileError(PgfUserError):
    """The input file is not a readable `pgf attribute` HDF5 file."""


@dataclass
class RegionScores:
    """One region of the file: per-base scores (NaN: masked), the one-hot bases and the method's extras."""

    region: Region
    score: np.ndarray  # (L,) float32
    onehot: np.ndarray  # (L, 4) uint8, columns A C G T
    hypothetical: np.ndarray | None  # (L, 4) when the file was written with --method hypothetical
    target_value: float

    def crop(self, region: Region) -> "RegionScores":
        """The part of these scores that `region` covers (it must lie inside)."""
        lo, hi = region.start - self.region.start, region.end - self.region.start
        hyp = None if self.hypothetical is None else self.hypothetical[lo:hi]
        return RegionScores(region, self.score[lo:hi], self.onehot[lo:hi], hyp, self.target_value)

    def sequence(self) -> str:
        """The observed bases (N where the one-hot row is empty)."""
        letters = np.array(list("ACGTN"))
        index = np.where(self.onehot.any(axis=1), self.onehot.argmax(axis=1), 4)
        return "".join(letters[index])


class AttributionFile:
    """An open attribution HDF5 file: its run attributes and regions; scores are read on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise AttributionFileError(f"attribution file not found: {self.path}")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError:
            raise AttributionFileError(f"cannot read {self.path} as HDF5 (is it a `pgf attribute` .h5 output?)") from None
        self.attrs = {key: _plain(value) for key, value in self._h5.attrs.items()}
        self.groups: dict[Region, str] = {}
        for name, group in self._h5.items():
            if not isinstance(group, h5py.Group) or "score" not in group or "chrom" not in group.attrs:
                continue
            a = group.attrs
            region = Region(str(a["chrom"]), int(a["start"]), int(a["end"]), str(a["name"]) if "name" in a else None)
            self.groups[region] = name
        if not self.groups:
            self.close()
            raise AttributionFileError(f"{self.path} holds no attribution regions (is it a `pgf attribute` .h5 output?)")

    @property
    def regions(self) -> list[Region]:
        return list(self.groups)

    def load(self, region: Region) -> RegionScores:
        """The scores of one of the file's regions."""
        group = self._h5[self.groups[region]]
        try:
            hyp = group["hypothetical"][()] if "hypothetical" in group else None
            return RegionScores(region, group["score"][()].astype(np.float32), group["onehot"][()], hyp,
                                float(group.attrs.get("target_value", np.nan)))
        except (OSError, KeyError) as exc:
            raise AttributionFileError(f"{self.path}: cannot read region {region}: {exc}") from None

    def find(self, spec: str) -> tuple[Region, Region]:
        """(file region, shown region) for a CHROM:START-END or region name inside one of the file's regions."""
        named = [r for r in self.groups if r.name == spec]
        if named:
            return named[0], named[0]
        sizes: dict[str, int] = {}
        for r in self.groups:
            sizes[r.chrom] = max(sizes.get(r.chrom, 0), r.end)
        try:
            wanted = parse_region(spec, sizes)
        except RegionError as exc:
            raise RegionError(f"region {spec!r} is not in {self.path} ({exc}); it holds {self._listing()}") from None
        for r in self.groups:
            if r.chrom == wanted.chrom and r.start <= wanted.start and wanted.end <= r.end:
                return r, wanted
        raise RegionError(f"region {wanted.to_string(commas=True)} is not inside any region of {self.path}; it holds {self._listing()}")

    def only(self) -> Region:
        """The file's region when it holds one, else a `RegionError` asking for --region."""
        if len(self.groups) == 1:
            return self.regions[0]
        raise RegionError(f"{self.path} holds {len(self.groups)} regions; choose one with --region ({self._listing()})")

    def _listing(self) -> str:
        shown = [r.to_string(commas=True) + (f" ({r.name})" if r.name else "") for r in self.regions[:5]]
        more = f", ... ({len(self.groups)} in all)" if len(self.groups) > 5 else ""
        return ", ".join(shown) + more

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "AttributionFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value
