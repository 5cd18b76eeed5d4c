"""Genomic regions: parsing samtools-style strings and BED files.

Inside the code a region is 0-based half-open (`start`, `end`), like BED.
On the command line it is 1-based inclusive, like samtools and IGV:
`chr1:1,000,001-1,131,072` is start 1,000,000, end 1,131,072 (131,072 bp).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pgf.errors import RegionError

_NUMBER = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Region:
    """A 0-based half-open interval on one sequence, with an optional name."""

    chrom: str
    start: int
    end: int
    name: str | None = None

    def __len__(self) -> int:
        return self.end - self.start

    def to_string(self, commas: bool = False) -> str:
        """1-based inclusive `chrom:start-end`, as a user would type it."""
        fmt = "{:,}" if commas else "{}"
        return f"{self.chrom}:{fmt.format(self.start + 1)}-{fmt.format(self.end)}"

    def __str__(self) -> str:
        return self.to_string()


def suggest_chromosomes(name: str, chrom_sizes: Mapping[str, int]) -> str:
    """A hint naming the closest known sequence names (or a few of them)."""
    names = list(chrom_sizes)
    by_lower_case = {known.lower(): known for known in names}
    bare = name.lower().removeprefix("chr")
    candidates = []
    for alias in (name.lower(), bare, "chr" + bare):  # case and a missing/extra "chr" prefix
        match = by_lower_case.get(alias)
        if match is not None and match not in candidates:
            candidates.append(match)
    candidates += [c for c in difflib.get_close_matches(name, names, n=3, cutoff=0.5) if c not in candidates]
    if candidates:
        return "did you mean " + ", ".join(repr(c) for c in candidates[:3]) + "?"
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
    return f"known sequences: {shown}"


def check_region(region: Region, chrom_sizes: Mapping[str, int], origin: str | None = None) -> Region:
    """Validate `region` against the genome; raise `RegionError` naming the problem."""
    where = f"{origin}: " if origin else ""
    if region.chrom not in chrom_sizes:
        raise RegionError(
            f"{where}unknown sequence {region.chrom!r} in the FASTA; "
            + suggest_chromosomes(region.chrom, chrom_sizes)
        )
    size = chrom_sizes[region.chrom]
    if region.start < 0:
        raise RegionError(f"{where}region {region} starts before the sequence start")
    if region.start > region.end:
        raise RegionError(f"{where}region start {region.start + 1:,} is after its end {region.end:,}")
    if region.start == region.end:
        raise RegionError(f"{where}region {region.chrom}:{region.start}-{region.end} (0-based) is empty")
    if region.end > size:
        raise RegionError(
            f"{where}region {region.to_string(commas=True)} ends past the end of "
            f"{region.chrom} ({size:,} bp)"
        )
    return region


def _parse_position(text: str, what: str, spec: str) -> int:
    cleaned = text.replace(",", "").strip()
    if not _NUMBER.match(cleaned):
        raise RegionError(f"region {spec!r}: {what} {text!r} is not a whole number")
    return int(cleaned)


def parse_region(spec: str, chrom_sizes: Mapping[str, int]) -> Region:
    """Parse `chr1:1,000,001-1,131,072` (1-based inclusive) or `chr1` (whole sequence).

    Sequence names that themselves contain ':' are recognised when the whole
    string, or the part before the last ':', is a known name.
    """
    text = spec.strip()
    if not text:
        raise RegionError("empty region string")
    if text in chrom_sizes:
        return Region(text, 0, chrom_sizes[text])
    chrom, sep, span = text.rpartition(":")
    if not sep:
        return check_region(Region(text, 0, 0), chrom_sizes)  # unknown sequence: raises
    if "-" not in span:
        if chrom not in chrom_sizes:  # e.g. a name with ':' that is not in the FASTA
            check_region(Region(text, 0, 0), chrom_sizes)
        raise RegionError(
            f"region {spec!r}: expected CHROM:START-END (1-based, inclusive) or a whole sequence name"
        )
    first, _, last = span.partition("-")
    start = _parse_position(first, "start", spec)
    end = _parse_position(last, "end", spec)
    if start < 1:
        raise RegionError(f"region {spec!r}: positions are 1-based; the first base is 1")
    return check_region(Region(chrom, start - 1, end), chrom_sizes)


def read_bed(path: str | Path, chrom_sizes: Mapping[str, int] | None) -> list[Region]:
    """Read regions from a BED file (0-based half-open; optional 4th column = name).

    `track`, `browser` and `#` lines and blank lines are skipped. Every problem
    is reported with the file name and line number. With `chrom_sizes` None the
    intervals are not checked against a genome (annotations to draw, say).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise RegionError(f"BED file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegionError(f"cannot read BED file {path}: {exc}") from None
    regions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        origin = f"{path}:{number}"
        if len(fields) < 3:
            raise RegionError(f"{origin}: a BED line needs at least 3 columns (chrom, start, end)")
        chrom = fields[0].strip()
        try:
            start, end = int(fields[1]), int(fields[2])
        except ValueError:
            raise RegionError(f"{origin}: start and end must be whole numbers, got {fields[1]!r}, {fields[2]!r}") from None
        if start < 0:
            raise RegionError(f"{origin}: BED start {start} is negative (BED is 0-based)")
        name = fields[3].strip() if len(fields) > 3 and fields[3].strip() else None
        region = Region(chrom, start, end, name)
        regions.append(region if chrom_sizes is None else check_region(region, chrom_sizes, origin))
    if not regions:
        raise RegionError(f"BED file {path} holds no regions")
    return regions


def find_overlap(regions: Iterable[Region]) -> tuple[Region, Region] | None:
    """Return the first pair of overlapping regions (by position), or None."""
    ordered = sorted(regions, key=lambda r: (r.chrom, r.start, r.end))
    for previous, current in zip(ordered, ordered[1:]):
        if previous.chrom == current.chrom and current.start < previous.end:
            return previous, current
    return None
