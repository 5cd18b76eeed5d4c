"""VCF and variant-string parsing, and the checks against the FASTA."""

import gzip

import pytest

from pgf.io.regions import Region
from pgf.io.variants import Variant, VariantError, check_variants, parse_variant, read_vcf

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def write_vcf(tmp_path, body, name="v.vcf", compress=False):
    path = tmp_path / name
    text = HEADER + body
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    return path


def test_parse_variant_strings():
    v = parse_variant("chr1:1,000,123:a>G")
    assert (v.chrom, v.pos, v.ref, v.alt, v.offset, v.name) == ("chr1", 1000123, "A", "G", 1000122, "chr1:1000123:A>G")
    assert parse_variant("HLA:A:5:C>T").chrom == "HLA:A"


@pytest.mark.parametrize(
    "text, message",
    [
        ("chr1:100:A", "expected CHROM:POS:REF>ALT"),
        ("chr1:100:AT>G", "is an indel"),
        ("chr1:100:AT>GC", "multi-base substitution"),
        ("chr1:100:A>A", "ALT equals REF"),
        ("chr1:100:A>N", "must be A, C, G or T"),
        ("chr1:0:A>C", "not 1-based"),
    ],
)
def test_bad_variant_strings(text, message):
    with pytest.raises(VariantError, match=message):
        parse_variant(text)


def test_vcf_multi_allelic_split_ids_and_gzip(tmp_path):
    body = "chr1\t10\trs1\tA\tC,G\t.\t.\t.\nchr1\t5\t.\tt\tc\t.\t.\t.\n"
    for compress in (False, True):
        variants = read_vcf(write_vcf(tmp_path, body, f"v{compress}.vcf.gz" if compress else "v.vcf", compress))
        assert [v.name for v in variants] == ["chr1:10:A>C", "chr1:10:A>G", "chr1:5:T>C"]
        assert [v.id for v in variants] == ["rs1", "rs1", None]


@pytest.mark.parametrize(
    "body, message",
    [
        ("chr1\t10\t.\tA\tAT\n", "is an indel"),
        ("chr1\t10\t.\tA\t<DEL>\n", "symbolic or missing ALT"),
        ("chr1\t10\t.\tA\tC,*\n", "symbolic or missing ALT"),
        ("chr1\tten\t.\tA\tC\n", "POS 'ten' is not a whole number"),
        ("chr1\t10\t.\tA\n", "at least 5 tab-separated columns"),
    ],
)
def test_vcf_refusals_name_the_line(tmp_path, body, message):
    path = write_vcf(tmp_path, body)
    with pytest.raises(VariantError) as info:
        read_vcf(path)
    assert message in str(info.value) and f"{path}:3" in str(info.value)


def test_vcf_missing_or_empty(tmp_path):
    with pytest.raises(VariantError, match="not found"):
        read_vcf(tmp_path / "none.vcf")
    with pytest.raises(VariantError, match="holds no variants"):
        read_vcf(write_vcf(tmp_path, ""))


SEQUENCE = "ACGTACGTAC"  # region chr1:101-110
REGION = Region("chr1", 100, 110)
SIZES = {"chr1": 1000, "chr2": 500}


def test_check_sorts_sets_aside_outside_and_duplicates():
    variants = [Variant("chr1", 105, "A", "T"), Variant("chr2", 5, "A", "T"), Variant("chr1", 101, "A", "C"),
                Variant("chr1", 200, "A", "C"), Variant("chr1", 101, "A", "C")]
    check = check_variants(variants, REGION, SIZES, SEQUENCE)
    assert [v.name for v in check.usable] == ["chr1:101:A>C", "chr1:105:A>T"]
    assert sorted(v.name for v in check.outside) == ["chr1:200:A>C", "chr2:5:A>T"]
    assert [v.name for v in check.duplicates] == ["chr1:101:A>C"]


def test_check_reference_mismatch():
    wrong = Variant("chr1", 102, "G", "T")  # the FASTA has C at 102
    with pytest.raises(VariantError, match="REF G does not match the FASTA base 'C' at chr1:102"):
        check_variants([wrong], REGION, SIZES, SEQUENCE)
    check = check_variants([wrong, Variant("chr1", 103, "G", "A")], REGION, SIZES, SEQUENCE, skip_mismatch=True)
    assert check.mismatched == [(wrong, "C")] and [v.pos for v in check.usable] == [103]


def test_check_unknown_sequence():
    with pytest.raises(VariantError, match="unknown sequence 'chr3'"):
        check_variants([Variant("chr3", 1, "A", "C")], REGION, SIZES, SEQUENCE)
