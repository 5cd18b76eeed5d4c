"""Reference genome access through pyfaidx (plain or bgzip-compressed FASTA)."""

from __future__ import annotations

from pathlib import Path

import pyfaidx

from pgf.errors import GenomeError
from pgf.io.regions import Region, check_region


class Genome:
    """A FASTA file with its index; builds `<fasta>.fai` when it is missing.

    Sequence names are the first word of each header line. Slices are
    returned as written in the file (soft-masked lower case is kept; the
    one-hot encoding ignores case).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise GenomeError(f"FASTA file not found: {self.path}")
        if self.path.is_dir():
            raise GenomeError(f"expected a FASTA file, got a directory: {self.path}")
        try:
            self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, rebuild=False)
        except pyfaidx.UnsupportedCompressionFormat:
            raise GenomeError(
                f"{self.path}: compressed FASTA must be bgzip-compressed (plain gzip cannot be indexed); "
                f"recompress with: gunzip -c {self.path.name} | bgzip > {self.path.stem}.bgz.fa.gz"
            ) from None
        except PermissionError as exc:
            raise GenomeError(
                f"cannot build the FASTA index {self.path}.fai ({exc.strerror or exc}); "
                "make the folder writable, or index the file elsewhere with `samtools faidx` and copy the .fai beside it"
            ) from None
        except pyfaidx.FastaIndexingError as exc:
            raise GenomeError(f"{self.path} is not a valid FASTA file: {exc}") from None
        except ValueError as exc:  # pyfaidx: duplicate sequence names
            raise GenomeError(f"{self.path}: {exc}") from None
        except OSError as exc:
            raise GenomeError(f"cannot read FASTA {self.path}: {exc}") from None
        self.chrom_sizes: dict[str, int] = {name: len(record) for name, record in self._fasta.records.items()}
        if not self.chrom_sizes:
            raise GenomeError(f"{self.path} holds no sequences")

    def fetch(self, region: Region) -> str:
        """The sequence of `region` (0-based half-open), as a str of length len(region)."""
        check_region(region, self.chrom_sizes)
        try:
            sequence = self._fasta[region.chrom][region.start : region.end]
        except (OSError, ValueError, pyfaidx.FetchError) as exc:
            raise GenomeError(f"cannot read {region} from {self.path}: {exc}") from None
        if len(sequence) != len(region):
            raise GenomeError(
                f"{self.path}: read {len(sequence)} bases for {region} ({len(region)} expected); is the .fai stale?"
            )
        return sequence

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
