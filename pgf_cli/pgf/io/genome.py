"""Reference genome access through pyfaidx (plain or bgzip-compressed FASTA)."""

from __future__ import annotations

from pathlib import Path

import pyfaidx

from pgf.errors import GenomeError
from pgf.io.regions import Region, check_region


def _is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (plain gzip and bgzip alike)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError:
        return False


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
        compressed = self.path.name.lower().endswith((".gz", ".bgz"))
        if not compressed and _is_gzip(self.path):
            raise GenomeError(
                f"{self.path} is gzip-compressed but its name does not end in .gz; "
                "a compressed FASTA must be bgzip-compressed (not plain gzip) and named *.gz or *.bgz"
            )
        indexes = [Path(f"{self.path}.fai")] + ([Path(f"{self.path}.gzi")] if compressed else [])
        missing = [index for index in indexes if not index.exists()]
        try:
            self._fasta = self._open(missing)
        except pyfaidx.UnsupportedCompressionFormat:
            base = self.path.name.removesuffix(".gz").removesuffix(".bgz")
            raise GenomeError(
                f"{self.path}: compressed FASTA must be bgzip-compressed (plain gzip cannot be indexed); "
                f"recompress with: gunzip -c {self.path.name} > {base} && bgzip -f {base}"
            ) from None
        except pyfaidx.FastaNotFoundError:
            raise GenomeError(f"cannot open FASTA {self.path} (is it readable?)") from None
        except pyfaidx.FastaIndexingError as exc:
            raise GenomeError(f"{self.path} is not a valid FASTA file: {exc}") from None
        except UnicodeDecodeError:
            raise GenomeError(f"{self.path} is not a valid FASTA file: it is not text") from None
        except ValueError as exc:  # pyfaidx: duplicate sequence names
            raise GenomeError(f"{self.path}: {exc}") from None
        except OSError as exc:
            if missing:  # pyfaidx re-raises a failed index write as a bare OSError
                names = " and ".join(str(index) for index in missing)
                raise GenomeError(
                    f"cannot build the FASTA index {names} ({exc.strerror or 'is the folder writable?'}); "
                    "make the folder writable, or index the file elsewhere with `samtools faidx` "
                    "and copy the index beside it"
                ) from None
            raise GenomeError(f"cannot read FASTA {self.path}: {exc}") from None
        self.chrom_sizes: dict[str, int] = {name: len(record) for name, record in self._fasta.records.items()}
        if not self.chrom_sizes:
            self._fasta.close()
            raise GenomeError(f"{self.path} holds no sequences")

    def _open(self, missing_indexes: list[Path]) -> pyfaidx.Fasta:
        """Open with pyfaidx; an index it starts building for a file it then refuses is removed."""
        try:
            return pyfaidx.Fasta(str(self.path), as_raw=True, rebuild=False)
        except BaseException:
            for index in missing_indexes:
                index.unlink(missing_ok=True)
            raise

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
