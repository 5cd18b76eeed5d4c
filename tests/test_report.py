"""`pgf report`: the self-contained page's data, the IGV session, naming warnings and errors
(tests/test_report_browser.py opens the page in a real browser)."""

from __future__ import annotations

import base64
import gzip
import importlib.metadata
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pyBigWig
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.io.genome import Genome
from pgf.io.regions import Region
from pgf.viz.igv_session import naming_warning
from tests.helpers import write_fasta
from tests.viz_fixtures import FASTA, REGIONS, TRUTH, VCF, model_attributions, synthetic_attributions

pytest.importorskip("igv_notebook", reason="the report extra (igv-notebook) is not installed")
runner = CliRunner()


@pytest.fixture(scope="module")
def h5(tmp_path_factory) -> Path:
    return model_attributions(tmp_path_factory)


def report(*args: object):
    return runner.invoke(app, ["report", *map(str, args)])


def sessions(page: str) -> list[dict]:
    blocks = re.findall(r'<script type="application/json" id="pgf-session-(\d+)">(.*?)</script>', page, re.S)
    return [json.loads(text) for _, text in sorted(blocks, key=lambda b: int(b[0]))]


def unpack(uri: str) -> str:
    prefix = "data:application/gzip;base64,"
    assert uri.startswith(prefix)
    return gzip.decompress(base64.b64decode(uri[len(prefix):])).decode()


def test_page_is_self_contained_and_holds_each_regions_data(h5, tmp_path):
    out = tmp_path / "report.html"
    result = report(h5, "--fasta", FASTA, "--bed", TRUTH, "--vcf", VCF, "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing loaded from elsewhere
    igv = importlib.metadata.distribution("igv-notebook").locate_file("igv_notebook/js/igv.min.js").read_text()
    assert igv[:2000] in page  # igv.js inlined from the installed package
    data = sessions(page)
    assert len(data) == 2
    with h5py.File(h5) as f, Genome(FASTA) as genome:
        for session, spec in zip(data, REGIONS):
            group = f[spec.replace(",", "")]
            region = Region("chr1", int(group.attrs["start"]), int(group.attrs["end"]))
            header, sequence = unpack(session["reference"]["fastaURL"]).split("\n")[:2]
            assert header == f">chr1:{region.start + 1}-{region.end} @len={genome.chrom_sizes['chr1']}"
            assert sequence == genome.fetch(region)
            track = session["tracks"][0]
            assert track["type"] == "wig" and track["format"] == "bedgraph"
            values = np.full(len(region), np.nan)
            for line in unpack(track["url"]).splitlines():
                chrom, start, end, value = line.split("\t")
                values[int(start) - region.start : int(end) - region.start] = float(value)
            np.testing.assert_allclose(values, group["score"][()], rtol=1e-3, atol=1e-12)
            bed = unpack(session["tracks"][1]["url"])
            assert ("chr1_promoter_9" in bed) == (spec == REGIONS[0])
            assert ("chr1_enhancer_5" in bed) == (spec == REGIONS[1])
            assert session["tracks"][2]["format"] == "vcf"
    rows = re.findall(r'<tr data-session="(\d+)" data-locus="([^"]+)"><td>([^<]*)</td><td>([^<]*)</td>', page)
    variants = [r for r in rows if "&gt;" in r[3]]
    assert [(r[0], r[2]) for r in variants] == [("0", "chr1_104622_chr1_promoter_9"), ("1", "chr1_133966_chr1_enhancer_5")]
    assert [r[1] for r in variants] == ["chr1:104602-104642", "chr1:133946-133986"]  # each row goes to its variant
    top = re.findall(r'data-locus="chr1:(\d+)-(\d+)">([\d,]+) ([ACGT]) ', page)
    with h5py.File(h5) as f:
        group = f[REGIONS[0].replace(",", "")]
        best = int(np.nanargmax(np.abs(group["score"][()]))) + int(group.attrs["start"]) + 1
    assert int(top[0][2].replace(",", "")) == best  # the first listed base is the region's best


def test_igv_session_opens_the_fasta_and_a_bigwig_of_the_scores(h5, tmp_path):
    session = tmp_path / "igv" / "session.xml"
    session.parent.mkdir()
    result = report(h5, "--fasta", FASTA, "--bed", TRUTH, "--igv-session", session)
    assert result.exit_code == 0, result.output
    root = ET.parse(session).getroot()
    assert (session.parent / root.get("genome")).resolve() == FASTA.resolve()
    paths = [(session.parent / r.get("path")).resolve() for r in root.iter("Resource")]
    assert paths == [(session.parent / "session.bw").resolve(), TRUTH.resolve()]
    bw = pyBigWig.open(str(paths[0]))
    with h5py.File(h5) as f:
        for spec in REGIONS:
            group = f[spec.replace(",", "")]
            start, end = int(group.attrs["start"]), int(group.attrs["end"])
            np.testing.assert_allclose(bw.values("chr1", start, end), group["score"][()], rtol=1e-6)
    bw.close()


def test_names_unlike_a_browser_assembly_are_warned_about(tmp_path):
    assert naming_warning(["chr1", "chrX", "1", "22", "MT", "chrM", "Y"]) is None
    warning = naming_warning(["scaffold_7", "chr1"])
    assert warning and "scaffold_7" in warning and "chr1," not in warning
    fasta = write_fasta(tmp_path / "odd.fa", {"scaffold_7": "ACGT" * 100})
    h5 = synthetic_attributions(tmp_path / "odd.h5", fasta, {Region("scaffold_7", 10, 90): np.ones(80)})
    result = report(h5, "--fasta", fasta, "--igv-session", tmp_path / "s.xml")
    assert result.exit_code == 0, result.output
    assert "scaffold_7 do not look like a browser assembly" in result.stderr


def test_missing_report_extra_is_a_one_line_error(h5, tmp_path, monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    result = report(h5, "--fasta", FASTA, "-o", tmp_path / "r.html")
    assert result.exit_code == 2
    assert result.stderr.strip() == ('error: pgf report needs igv.js from the igv-notebook package, which is not installed; '
                                     'install it with: pip install "pgf[report]"')


def test_errors(h5, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    other = write_fasta(tmp_path / "other.fa", {"chr2": "ACGT" * 50})
    with Genome(FASTA) as genome:
        chr1 = genome.fetch(Region("chr1", 0, genome.chrom_sizes["chr1"])).upper()
    swapped = chr1[104_000:104_010].translate(str.maketrans("ACGT", "CATG"))  # 10 bases of region 1 changed
    changed = write_fasta(tmp_path / "changed.fa", {"chr1": chr1[:104_000] + swapped + chr1[104_010:]})
    cases = [
        ([bad, "--fasta", FASTA, "-o", tmp_path / "a.html"], "cannot read"),
        ([h5, "--fasta", FASTA, "--region", "chr1:1-100", "-o", tmp_path / "b.html"], "is not inside any region"),
        ([h5, "--fasta", other, "-o", tmp_path / "c.html"], "sequence 'chr1' of"),
        ([h5, "--fasta", changed, "-o", tmp_path / "d.html"], "differs from"),
        ([h5, "--fasta", changed, "-o", tmp_path / "d.html"], "at 10 bases of chr1:103,801-105,300"),
        ([h5, "--fasta", FASTA], "nothing to write"),
    ]
    for args, message in cases:
        result = report(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.glob("*.html"))
