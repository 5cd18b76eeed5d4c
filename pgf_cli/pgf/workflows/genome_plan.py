"""`pgf attribute --genome`: every chromosome as one job, without its assembly gaps.

Each chosen sequence is cut at its assembly gaps (runs of at least `GAP_MIN` N): the stretches
between them are the regions, computed in windows (`--window/--stride`); the gaps are not
computed and a track holds no data there. Shorter runs of N stay inside their region, masked as
every N is.
"""

from __future__ import annotations

import re

from pgf.errors import RegionError
from pgf.io.genome import Genome
from pgf.io.regions import Region

GAP_MIN = 100  # N in a row that make an assembly gap (AGP gaps are usually 100 bp or longer)
_GAP = re.compile(f"[Nn]{{{GAP_MIN},}}")


def chosen_sequences(genome: Genome, chroms: list[str] | None, exclude: str | None) -> list[str]:
    """The sequences of the FASTA in its order: `chroms` only (when given), less those whose whole name
    matches the regular expression `exclude`."""
    names = list(genome.chrom_sizes)
    if chroms:
        unknown = [name for name in chroms if name not in genome.chrom_sizes]
        if unknown:
            raise RegionError(f"--chroms: {', '.join(unknown)} not in {genome.path} (it has {', '.join(names[:5])}"
                              f"{', ...' if len(names) > 5 else ''})")
        wanted = set(chroms)
        names = [name for name in names if name in wanted]
    if exclude:
        try:
            pattern = re.compile(exclude)
        except re.error as exc:
            raise RegionError(f"--exclude-chroms {exclude!r} is not a regular expression: {exc}") from None
        names = [name for name in names if not pattern.fullmatch(name)]
    if not names:
        raise RegionError("--genome: no sequence left to compute (check --chroms and --exclude-chroms)")
    return names


def genome_regions(genome: Genome, chroms: list[str] | None = None, exclude: str | None = None) -> tuple[list[Region], int]:
    """(the regions between assembly gaps of every chosen sequence, in FASTA order; bp in gaps)."""
    regions, gaps = [], 0
    for name in chosen_sequences(genome, chroms, exclude):
        size = genome.chrom_sizes[name]
        sequence = genome.fetch(Region(name, 0, size))
        start = 0
        for gap in _GAP.finditer(sequence):
            if gap.start() > start:
                regions.append(Region(name, start, gap.start()))
            gaps += gap.end() - gap.start()
            start = gap.end()
        if start < size:
            regions.append(Region(name, start, size))
    return regions, gaps
