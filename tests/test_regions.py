"""Regions: samtools-style strings (1-based inclusive) and BED files (0-based half-open)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgf.errors import PgfUserError, RegionError
from pgf.io.regions import Region, check_region, find_overlap, parse_region, read_bed, suggest_chromosomes

SIZES = {"chr1": 1_000_000, "chr2": 5_000, "chrX": 2_000, "HLA:A": 300, "chrUn_KI270742v1": 186_739}


def write_bed(folder: Path, text: str, name: str = "regions.bed") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- Region -------------------------------------------------------------------


def test_region_length_and_strings():
    region = Region("chr1", 999_999, 1_131_072)
    assert len(region) == 131_073
    assert region.to_string() == "chr1:1000000-1131072"
    assert region.to_string(commas=True) == "chr1:1,000,000-1,131,072"
    assert str(region) == "chr1:1000000-1131072"
    assert Region("chr2", 0, 1).to_string() == "chr2:1-1"


# --- parse_region -------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, start, end",
    [
        ("chr1:1-1000", 0, 1000),
        ("chr1:1001-2000", 1000, 2000),
        ("chr1:500-500", 499, 500),
        ("chr2:1-5000", 0, 5000),
        ("chr1:1000000-1000000", 999_999, 1_000_000),
    ],
)
def test_parse_region_is_one_based_inclusive_and_round_trips(spec, start, end):
    region = parse_region(spec, SIZES)
    assert (region.chrom, region.start, region.end) == (spec.split(":")[0], start, end)
    assert region.name is None
    assert len(region) == end - start
    assert region.to_string() == spec


def test_parse_region_with_commas():
    region = parse_region("chr1:1,001-2,000", SIZES)
    assert (region.chrom, region.start, region.end, len(region)) == ("chr1", 1000, 2000, 1000)
    assert region.to_string() == "chr1:1001-2000"
    assert region.to_string(commas=True) == "chr1:1,001-2,000"
    big = parse_region("chr1:800,001-931,072", SIZES)
    assert (big.start, big.end, len(big)) == (800_000, 931_072, 131_072)
    assert big.to_string(commas=True) == "chr1:800,001-931,072"
    assert big.to_string() == "chr1:800001-931072"


def test_parse_whole_chromosome():
    assert parse_region("chr2", SIZES) == Region("chr2", 0, 5000)
    assert parse_region("chrX", SIZES).to_string() == "chrX:1-2000"
    assert len(parse_region("chrUn_KI270742v1", SIZES)) == 186_739


def test_parse_chromosome_name_containing_colon():
    assert parse_region("HLA:A", SIZES) == Region("HLA:A", 0, 300)
    region = parse_region("HLA:A:11-20", SIZES)
    assert region == Region("HLA:A", 10, 20)
    assert region.to_string() == "HLA:A:11-20"


def test_parse_region_strips_whitespace():
    assert parse_region("  chr1:1,001-2,000\n", SIZES) == Region("chr1", 1000, 2000)
    assert parse_region("\tchr2 ", SIZES) == Region("chr2", 0, 5000)
    assert parse_region("chr1: 11 - 20", SIZES) == Region("chr1", 10, 20)


def test_region_errors_are_user_errors():
    assert issubclass(RegionError, PgfUserError)


@pytest.mark.parametrize(
    "spec, suggested",
    [("Chr1", "'chr1'"), ("1", "'chr1'"), ("chr10", "'chr1'"), ("X", "'chrX'"), ("Chr1:1-10", "'chr1'")],
)
def test_unknown_chromosome_suggests_closest_names(spec, suggested):
    with pytest.raises(RegionError) as info:
        parse_region(spec, SIZES)
    message = str(info.value)
    chrom = spec.rpartition(":")[0] or spec
    assert f"unknown sequence {chrom!r}" in message
    assert "did you mean" in message
    assert suggested in message


def test_unknown_chromosome_without_close_name_lists_known_sequences():
    with pytest.raises(RegionError) as info:
        parse_region("mitochondrion", SIZES)
    assert str(info.value) == (
        "unknown sequence 'mitochondrion' in the FASTA; "
        "known sequences: chr1, chr2, chrX, HLA:A, chrUn_KI270742v1"
    )
    many = {f"scaffold{i}": 10 for i in range(8)}
    assert suggest_chromosomes("zzz", many) == (
        "known sequences: scaffold0, scaffold1, scaffold2, scaffold3, scaffold4, ... (8 in all)"
    )


def test_suggestion_prefers_exact_chr_alias():
    assert suggest_chromosomes("1", SIZES).startswith("did you mean 'chr1'")
    assert suggest_chromosomes("chrchr2", {"chr2": 5}).startswith("did you mean")
    assert suggest_chromosomes("2", {"2": 1, "chr2": 2}) == "did you mean '2', 'chr2'?"


def test_end_past_chromosome_end():
    with pytest.raises(RegionError) as info:
        parse_region("chr2:4,001-5,001", SIZES)
    assert str(info.value) == "region chr2:4,001-5,001 ends past the end of chr2 (5,000 bp)"


def test_start_after_end():
    with pytest.raises(RegionError) as info:
        parse_region("chr1:2,000-1,000", SIZES)
    assert str(info.value) == "region start 2,000 is after its end 1,000"


def test_start_zero_is_refused_as_one_based():
    with pytest.raises(RegionError) as info:
        parse_region("chr1:0-100", SIZES)
    assert "positions are 1-based; the first base is 1" in str(info.value)
    assert "'chr1:0-100'" in str(info.value)


@pytest.mark.parametrize(
    "spec, what, text",
    [("chr1:abc-100", "start", "'abc'"), ("chr1:1-1e6", "end", "'1e6'"), ("chr1:-5-100", "start", "''"),
     ("chr1:1.5-100", "start", "'1.5'")],
)
def test_non_numeric_positions(spec, what, text):
    with pytest.raises(RegionError) as info:
        parse_region(spec, SIZES)
    assert str(info.value) == f"region {spec!r}: {what} {text} is not a whole number"


def test_missing_end():
    with pytest.raises(RegionError) as info:
        parse_region("chr1:100", SIZES)
    assert "expected CHROM:START-END (1-based, inclusive)" in str(info.value)
    assert "'chr1:100'" in str(info.value)


@pytest.mark.parametrize("spec", ["", "   ", "\n"])
def test_empty_region_string(spec):
    with pytest.raises(RegionError, match="^empty region string$"):
        parse_region(spec, SIZES)


# --- check_region -------------------------------------------------------------


def test_check_region_messages_carry_origin():
    assert check_region(Region("chr2", 0, 5000), SIZES) == Region("chr2", 0, 5000)
    with pytest.raises(RegionError, match=r"^f\.bed:3: region chr2:10-10 \(0-based\) is empty$"):
        check_region(Region("chr2", 10, 10), SIZES, "f.bed:3")
    with pytest.raises(RegionError, match="starts before the sequence start"):
        check_region(Region("chr2", -1, 10), SIZES)


# --- read_bed -----------------------------------------------------------------


def test_read_bed_skips_headers_and_keeps_zero_based_coordinates(tmp_path):
    path = write_bed(
        tmp_path,
        "browser position chr1:1-100\n"
        'track name="peaks" description="test"\n'
        "# a comment\n"
        "\n"
        "chr1\t0\t100\tpeak1\t0\t+\n"
        "chr1\t1000\t2000\n"
        "chr2 10 20 spaced_name\n"
        "HLA:A\t5\t300\t\n"
        "chrX   1999   2000\n",
    )
    regions = read_bed(path, SIZES)
    assert regions == [
        Region("chr1", 0, 100, "peak1"),
        Region("chr1", 1000, 2000, None),
        Region("chr2", 10, 20, "spaced_name"),
        Region("HLA:A", 5, 300, None),
        Region("chrX", 1999, 2000, None),
    ]
    assert [len(r) for r in regions] == [100, 1000, 10, 295, 1]
    assert regions[0].to_string() == "chr1:1-100"


def test_read_bed_name_with_spaces_in_tab_separated_file(tmp_path):
    path = write_bed(tmp_path, "chr1\t10\t20\tmy peak one\r\nchr1\t30\t40\n")
    assert read_bed(path, SIZES) == [Region("chr1", 10, 20, "my peak one"), Region("chr1", 30, 40)]


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr1\t100", "a BED line needs at least 3 columns (chrom, start, end)"),
        ("chr1 100", "a BED line needs at least 3 columns (chrom, start, end)"),
        ("chr1\tten\t100", "start and end must be whole numbers, got 'ten', '100'"),
        ("chr1\t1\t1.5e3", "start and end must be whole numbers, got '1', '1.5e3'"),
        ("chr1\t100\t100", "region chr1:100-100 (0-based) is empty"),
        ("chr1\t200\t100", "region start 201 is after its end 100"),
        ("chr3\t0\t100", "unknown sequence 'chr3' in the FASTA; did you mean "),
        ("chr2\t4990\t5001", "region chr2:4,991-5,001 ends past the end of chr2 (5,000 bp)"),
    ],
)
def test_read_bed_errors_name_file_and_line(tmp_path, line, message):
    path = write_bed(tmp_path, "# header\nchr1\t0\t10\n" + line + "\n")
    with pytest.raises(RegionError) as info:
        read_bed(path, SIZES)
    text = str(info.value)
    assert text.startswith(f"{path}:3: ")
    assert message in text


def test_read_bed_missing_file(tmp_path):
    path = tmp_path / "nope.bed"
    with pytest.raises(RegionError, match="^BED file not found: .*nope.bed$"):
        read_bed(path, SIZES)


def test_read_bed_directory(tmp_path):
    with pytest.raises(RegionError, match="^cannot read BED file "):
        read_bed(tmp_path, SIZES)


@pytest.mark.parametrize("text", ["", "\n\n", "track name=x\n# only comments\n"])
def test_read_bed_without_regions(tmp_path, text):
    path = write_bed(tmp_path, text)
    with pytest.raises(RegionError) as info:
        read_bed(path, SIZES)
    assert str(info.value) == f"BED file {path} holds no regions"


# --- find_overlap ---------------------------------------------------------------


def test_find_overlap():
    a = Region("chr1", 0, 100)
    b = Region("chr1", 100, 200)  # touching, half-open: no overlap
    c = Region("chr2", 50, 150)
    assert find_overlap([]) is None
    assert find_overlap([a]) is None
    assert find_overlap([c, b, a]) is None
    d = Region("chr1", 150, 160)
    assert find_overlap([d, a, c, b]) == (b, d)
    # a long region hiding behind a short one is still found
    long = Region("chr2", 0, 1000)
    short = Region("chr2", 10, 20)
    assert find_overlap([Region("chr2", 500, 600), long]) == (long, Region("chr2", 500, 600))
    assert find_overlap([short, long]) == (long, short)
    # the same region twice overlaps itself
    assert find_overlap([a, Region("chr1", 0, 100, "again")]) is not None
    # same coordinates on different sequences do not overlap
    assert find_overlap([Region("chr1", 0, 10), Region("chrX", 0, 10)]) is None


def test_negative_bed_start_is_named(tmp_path):
    from pgf.errors import RegionError
    from pgf.io.regions import read_bed

    bed = tmp_path / "neg.bed"
    bed.write_text("chr1\t-5\t10\n")
    with pytest.raises(RegionError) as info:
        read_bed(bed, {"chr1": 100})
    assert str(info.value) == f"{bed}:1: BED start -5 is negative (BED is 0-based)"
