"""SNVs from VCF files and `chrom:pos:REF>ALT` strings.

Positions are 1-based as in VCF; inside the code a variant also carries its
0-based offset. Only single-nucleotide variants are accepted: multi-base REF
or ALT, indels and symbolic alleles (<DEL>, *) are refused with a message
naming the record. Multi-allelic records become one SNV per ALT allele.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pgf.errors import PgfUserError
from pgf.io.regions import Region, suggest_chromosomes

BASES = "ACGT"
_VARIANT = re.compile(r"^(?P<chrom>.+):(?P<pos>[\d,]+):(?P<ref>[A-Za-z]+)>(?P<alt>[A-Za-z]+)$")


class VariantError(PgfUserError):
    """A variant that cannot be used as asked."""


@dataclass(frozen=True)
class Variant:
    chrom: str
    pos: int  # 1-based
    ref: str
    alt: str
    id: str | None = None

    @property
    def offset(self) -> int:
        """0-based genome coordinate."""
        return self.pos - 1

    @property
    def name(self) -> str:
        return f"{self.chrom}:{self.pos}:{self.ref}>{self.alt}"

    def __str__(self) -> str:
        return self.name + (f" ({self.id})" if self.id else "")


def _snv(chrom: str, pos: int, ref: str, alt: str, origin: str, variant_id: str | None = None) -> Variant:
    ref, alt = ref.upper(), alt.upper()
    if alt.startswith("<") or alt in ("*", "."):
        raise VariantError(f"{origin}: symbolic or missing ALT {alt!r} is not a single-nucleotide variant (SNVs only)")
    if len(ref) != 1 or len(alt) != 1:
        kind = "indel" if len(ref) != len(alt) else "multi-base substitution"
        raise VariantError(
            f"{origin}: {chrom}:{pos} {ref}>{alt} is an {kind}; only single-nucleotide variants are supported "
            "(e.g. keep SNVs with `bcftools view -v snps`)"
        )
    if ref not in BASES or alt not in BASES:
        raise VariantError(f"{origin}: {chrom}:{pos} {ref}>{alt}: alleles must be A, C, G or T")
    if ref == alt:
        raise VariantError(f"{origin}: {chrom}:{pos} {ref}>{alt}: ALT equals REF")
    if pos < 1:
        raise VariantError(f"{origin}: position {pos} is not 1-based")
    return Variant(chrom, pos, ref, alt, variant_id)


def parse_variant(text: str) -> Variant:
    """`chr1:1,000,123:A>G` (1-based position)."""
    match = _VARIANT.match(text.strip())
    if not match:
        raise VariantError(f"variant {text!r}: expected CHROM:POS:REF>ALT, e.g. chr1:1000123:A>G")
    return _snv(match["chrom"], int(match["pos"].replace(",", "")), match["ref"], match["alt"], f"variant {text!r}")


def read_vcf(path: str | Path) -> list[Variant]:
    """SNVs of a VCF (plain or gzip/bgzip), one per ALT allele, in file order."""
    path = Path(path)
    if not path.is_file():
        raise VariantError(f"VCF file not found: {path}")
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    variants = []
    try:
        with opener(path, "rt") as handle:
            for number, line in enumerate(handle, start=1):
                if line.startswith("#") or not line.strip():
                    continue
                fields = line.rstrip("\n").split("\t")
                origin = f"{path}:{number}"
                if len(fields) < 5:
                    raise VariantError(f"{origin}: a VCF record needs at least 5 tab-separated columns (CHROM POS ID REF ALT)")
                chrom, pos_text, variant_id, ref, alts = fields[:5]
                if not pos_text.isdigit():
                    raise VariantError(f"{origin}: POS {pos_text!r} is not a whole number")
                for alt in alts.split(","):
                    variants.append(_snv(chrom, int(pos_text), ref, alt, origin, None if variant_id == "." else variant_id))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise VariantError(f"cannot read VCF {path}: {exc}") from None
    if not variants:
        raise VariantError(f"VCF {path} holds no variants")
    return variants


@dataclass
class VariantCheck:
    usable: list[Variant]
    outside: list[Variant]  # not inside the region
    mismatched: list[tuple[Variant, str]]  # (variant, base in the FASTA), skipped under skip_mismatch
    duplicates: list[Variant]  # given more than once; computed once


def check_variants(
    variants: Iterable[Variant],
    region: Region,
    chrom_sizes: Mapping[str, int],
    region_sequence: str,
    skip_mismatch: bool = False,
) -> VariantCheck:
    """Sort variants by position, set aside those outside the region, and check REF against the FASTA."""
    check = VariantCheck([], [], [], [])
    seen = set()
    for variant in sorted(variants, key=lambda v: (v.chrom, v.pos, v.alt)):
        if variant.name in seen:
            check.duplicates.append(variant)
            continue
        seen.add(variant.name)
        if variant.chrom not in chrom_sizes:
            raise VariantError(f"variant {variant}: unknown sequence {variant.chrom!r}; " + suggest_chromosomes(variant.chrom, chrom_sizes))
        if variant.chrom != region.chrom or not (region.start <= variant.offset < region.end):
            check.outside.append(variant)
            continue
        base = region_sequence[variant.offset - region.start].upper()
        if base != variant.ref:
            if not skip_mismatch:
                raise VariantError(
                    f"variant {variant}: REF {variant.ref} does not match the FASTA base {base!r} at "
                    f"{variant.chrom}:{variant.pos:,} (use --skip-mismatch to skip such variants)"
                )
            check.mismatched.append((variant, base))
            continue
        check.usable.append(variant)
    return check
