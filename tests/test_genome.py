"""Genome: FASTA access through pyfaidx (plain and bgzip), index building, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyfaidx
import pytest
from Bio.bgzf import BgzfWriter

from pgf.errors import GenomeError, RegionError
from pgf.io.genome import Genome
from pgf.io.regions import Region


def make_sequences(seed: int = 3) -> dict[str, str]:
    """Random sequences with soft-masked (lower case) stretches and an N run."""
    rng = np.random.default_rng(seed)
    sequences = {}
    for name, length in (("chr1", 1234), ("chr2", 500), ("chrM", 77)):
        bases = list(rng.choice(list("ACGT"), size=length))
        for index in range(100, min(200, length)):
            bases[index] = bases[index].lower()
        for index in range(300, min(320, length)):
            bases[index] = "N"
        sequences[name] = "".join(bases)
    return sequences


def fasta_text(sequences: dict[str, str], width: int = 60) -> str:
    lines = []
    for name, sequence in sequences.items():
        lines.append(f">{name} some description")
        lines += [sequence[i : i + width] for i in range(0, len(sequence), width)]
    return "\n".join(lines) + "\n"


def write_fasta(path: Path, sequences: dict[str, str], width: int = 60) -> Path:
    path.write_text(fasta_text(sequences, width))
    return path


def write_bgzip(path: Path, text: str) -> Path:
    writer = BgzfWriter(str(path), "wb")
    writer.write(text.encode())
    writer.close()
    return path


SEQUENCES = make_sequences()
SIZES = {"chr1": 1234, "chr2": 500, "chrM": 77}


def test_builds_fai_when_missing(tmp_path):
    path = write_fasta(tmp_path / "genome.fa", SEQUENCES)
    fai = tmp_path / "genome.fa.fai"
    assert not fai.exists()
    with Genome(path) as genome:
        assert genome.chrom_sizes == SIZES
        assert list(genome.chrom_sizes) == ["chr1", "chr2", "chrM"]
    assert fai.exists()
    rows = [line.split("\t") for line in fai.read_text().splitlines()]
    assert [(row[0], int(row[1]), int(row[3]), int(row[4])) for row in rows] == [
        ("chr1", 1234, 60, 61),
        ("chr2", 500, 60, 61),
        ("chrM", 77, 60, 61),
    ]
    # the index is reused as it is
    before = fai.stat().st_mtime_ns
    with Genome(str(path)) as genome:
        assert genome.chrom_sizes == SIZES
    assert fai.stat().st_mtime_ns == before


@pytest.mark.parametrize("width", [60, 7])
def test_fetch_returns_exact_slices(tmp_path, width):
    path = write_fasta(tmp_path / "genome.fa", SEQUENCES, width)
    rng = np.random.default_rng(11)
    with Genome(path) as genome:
        assert genome.fetch(Region("chr1", 0, 10)) == SEQUENCES["chr1"][:10]
        assert genome.fetch(Region("chr1", 95, 105)) == SEQUENCES["chr1"][95:105]
        assert genome.fetch(Region("chr1", 1233, 1234)) == SEQUENCES["chr1"][-1]
        assert genome.fetch(Region("chrM", 0, 77)) == SEQUENCES["chrM"]
        for chrom, sequence in SEQUENCES.items():
            for _ in range(20):
                start = int(rng.integers(0, len(sequence)))
                end = int(rng.integers(start + 1, len(sequence) + 1))
                fetched = genome.fetch(Region(chrom, start, end))
                assert fetched == sequence[start:end]
                assert len(fetched) == end - start


def test_fetch_keeps_soft_masking_and_n(tmp_path):
    path = write_fasta(tmp_path / "genome.fa", SEQUENCES)
    with Genome(path) as genome:
        masked = genome.fetch(Region("chr1", 98, 102))
        assert masked == SEQUENCES["chr1"][98:100] + SEQUENCES["chr1"][100:102]
        assert masked[:2].isupper() and masked[2:].islower()
        assert genome.fetch(Region("chr1", 300, 320)) == "N" * 20
        assert genome.fetch(Region("chr2", 150, 210)) == SEQUENCES["chr2"][150:210]


def test_bgzip_fasta_gives_identical_sequence(tmp_path):
    plain = write_fasta(tmp_path / "plain.fa", SEQUENCES)
    packed = write_bgzip(tmp_path / "packed.fa.gz", fasta_text(SEQUENCES))
    regions = [Region("chr1", 0, 1234), Region("chr1", 90, 333), Region("chr2", 499, 500), Region("chrM", 5, 70)]
    with Genome(plain) as a, Genome(packed) as b:
        assert b.chrom_sizes == a.chrom_sizes == SIZES
        for region in regions:
            assert b.fetch(region) == a.fetch(region) == SEQUENCES[region.chrom][region.start : region.end]
    assert (tmp_path / "packed.fa.gz.fai").exists()
    assert (tmp_path / "packed.fa.gz.gzi").exists()
    with Genome(packed) as again:  # indexes reused
        assert again.fetch(Region("chr2", 10, 20)) == SEQUENCES["chr2"][10:20]


def test_plain_gzip_is_refused_with_bgzip_hint(tmp_path):
    path = tmp_path / "genome.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(fasta_text(SEQUENCES))
    with pytest.raises(GenomeError) as info:
        Genome(path)
    message = str(info.value)
    assert "must be bgzip-compressed" in message
    assert "gunzip -c genome.fa.gz > genome.fa && bgzip -f genome.fa" in message


def test_gzip_without_gz_suffix_is_refused(tmp_path):
    path = tmp_path / "genome.fa"
    with gzip.open(path, "wt") as handle:
        handle.write(fasta_text(SEQUENCES))
    with pytest.raises(GenomeError) as info:
        Genome(path)
    assert "is gzip-compressed but its name does not end in .gz" in str(info.value)
    assert "bgzip" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(GenomeError) as info:
        Genome(tmp_path / "absent.fa")
    assert str(info.value) == f"FASTA file not found: {tmp_path / 'absent.fa'}"


def test_directory(tmp_path):
    with pytest.raises(GenomeError) as info:
        Genome(tmp_path)
    assert str(info.value) == f"expected a FASTA file, got a directory: {tmp_path}"


def test_text_file_that_is_not_fasta(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("chrom\tstart\tend\nchr1\t0\t100\n")
    with pytest.raises(GenomeError) as info:
        Genome(path)
    assert str(info.value).startswith(f"{path} is not a valid FASTA file: ")
    assert "Unexpected text before the first sequence definition line" in str(info.value)
    assert not (tmp_path / "notes.txt.fai").exists()


def test_empty_file(tmp_path):
    path = tmp_path / "empty.fa"
    path.write_text("")
    with pytest.raises(GenomeError, match="is not a valid FASTA file: .*does not contain a valid sequence"):
        Genome(path)


def test_binary_file(tmp_path):
    path = tmp_path / "binary.fa"
    path.write_bytes(b">x\n\xff\xfe\x00\x01\n")
    with pytest.raises(GenomeError) as info:
        Genome(path)
    assert str(info.value) == f"{path} is not a valid FASTA file: it is not text"


def test_inconsistent_line_lengths(tmp_path):
    path = tmp_path / "ragged.fa"
    path.write_text(">chr1\nACGTACGT\nACGT\nACGTACGT\n>chr2\nAC\n")
    with pytest.raises(GenomeError) as info:
        Genome(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a valid FASTA file: ")
    assert "Line length of fasta file is not consistent" in message
    assert ">chr1" in message


def test_duplicate_names(tmp_path):
    path = tmp_path / "dup.fa"
    path.write_text(">chr1\nACGT\n>chr2\nAAAA\n>chr1 again\nCCCC\n")
    with pytest.raises(GenomeError) as info:
        Genome(path)
    assert str(info.value) == f'{path}: Duplicate key "chr1"'
    assert not (tmp_path / "dup.fa.fai").exists()  # no index left behind for a refused file


def test_index_cannot_be_built_permission_error(tmp_path, monkeypatch):
    """A read-only folder (simulated: the tests may run as root)."""
    path = write_fasta(tmp_path / "genome.fa", SEQUENCES)

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pyfaidx.Faidx, "build_index", refuse)
    with pytest.raises(GenomeError) as info:
        Genome(path)
    message = str(info.value)
    assert message.startswith(f"cannot build the FASTA index {path}.fai (Permission denied); ")
    assert "samtools faidx" in message
    assert not (tmp_path / "genome.fa.fai").exists()


def test_index_cannot_be_written_as_pyfaidx_reports_it(tmp_path, monkeypatch):
    """pyfaidx catches the PermissionError of the .fai write and raises a bare OSError."""
    path = write_fasta(tmp_path / "genome.fa", SEQUENCES)
    original = pyfaidx.Faidx._open_fai

    def open_fai(self, mode):
        if "w" in mode:
            raise PermissionError(13, "Permission denied", self.indexname)
        return original(self, mode)

    monkeypatch.setattr(pyfaidx.Faidx, "_open_fai", open_fai)
    with pytest.raises(GenomeError) as info:
        Genome(path)
    message = str(info.value)
    assert message.startswith(f"cannot build the FASTA index {path}.fai (")
    assert "make the folder writable" in message
    assert "rebuild=False" not in message  # pyfaidx's own advice does not apply to pgf users
    assert not (tmp_path / "genome.fa.fai").exists()


def test_existing_index_needs_no_write(tmp_path, monkeypatch):
    path = write_fasta(tmp_path / "genome.fa", SEQUENCES)
    Genome(path).close()

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pyfaidx.Faidx, "build_index", refuse)
    with Genome(path) as genome:
        assert genome.fetch(Region("chrM", 0, 5)) == SEQUENCES["chrM"][:5]


def test_fetch_outside_the_genome_is_a_region_error(tmp_path):
    path = write_fasta(tmp_path / "genome.fa", SEQUENCES)
    with Genome(path) as genome:
        with pytest.raises(RegionError) as info:
            genome.fetch(Region("chr2", 490, 501))
        assert str(info.value) == "region chr2:491-501 ends past the end of chr2 (500 bp)"
        with pytest.raises(RegionError, match="unknown sequence 'chr3'"):
            genome.fetch(Region("chr3", 0, 10))
        with pytest.raises(RegionError, match="is empty"):
            genome.fetch(Region("chr1", 5, 5))
