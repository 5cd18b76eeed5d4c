"""`pgf report`: a self-contained igv.js page of an attribution file, and/or an IGV desktop session."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgf.errors import GenomeError, PgfUserError
from pgf.io.atomic import AtomicOutput, check_output_path
from pgf.io.genome import Genome
from pgf.io.regions import Region
from pgf.io.tracks import RunMetadata, value_runs
from pgf.io.writers import TrackLabel, open_writer
from pgf.viz import page
from pgf.viz.attribution import AttributionFile, RegionScores
from pgf.viz.extras import igv_js
from pgf.viz.igv_session import naming_warning, write_igv_session
from pgf.viz.overlays import overlapping, read_bed_elements
from pgf.workflows.common import Reporter, SilentReporter

FLANK = 20  # bp shown either side of a base or variant chosen in the table
LARGE_PAGE = 200_000_000  # bytes; about 15 Mb of shown sequence


@dataclass
class ReportRequest:
    """What `pgf report` was asked for."""

    h5: Path
    fasta: Path
    output: Path | None = None  # the HTML page
    igv_session: Path | None = None  # IGV desktop session XML
    bigwig: Path | None = None  # the track the session opens (default: the session's path with .bw)
    regions: list[str] | None = None  # default: every region of the file
    bed: Path | None = None
    vcf: Path | None = None
    top: int = 5  # top-scoring bases listed per region
    force: bool = False


def _locus(chrom: str, start: int, end: int) -> str:
    return f"{chrom}:{start + 1}-{end}"


def _vcf_lines(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header lines, records split into fields) of a plain or gzip VCF."""
    if not path.is_file():
        raise PgfUserError(f"VCF file not found: {path}")
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    try:
        with opener(path, "rt") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise PgfUserError(f"cannot read VCF {path}: {exc}") from None
    header = [line for line in lines if line.startswith("#")]
    records = [line.split("\t") for line in lines if line.strip() and not line.startswith("#")]
    if any(len(r) < 5 or not r[1].isdigit() for r in records):
        raise PgfUserError(f"{path}: every VCF record needs CHROM, a whole-number POS, ID, REF and ALT (tab-separated)")
    return header, records


def _check_sequence(genome: Genome, scores: RegionScores, h5: Path) -> str:
    """The FASTA's bases of the region; a `GenomeError` when they are missing or differ from the file's."""
    region = scores.region
    if region.chrom not in genome.chrom_sizes:
        raise GenomeError(f"sequence {region.chrom!r} of {h5} is not in {genome.path}; was it computed on another genome?")
    if region.end > genome.chrom_sizes[region.chrom]:
        raise GenomeError(f"region {region.to_string(commas=True)} of {h5} runs past the end of {region.chrom} in {genome.path}")
    sequence = genome.fetch(region)
    observed = scores.sequence()
    differ = sum(1 for a, b in zip(sequence.upper(), observed) if b != "N" and a != b)
    if differ:
        raise GenomeError(f"{genome.path} differs from {h5} at {differ:,} bases of {region.to_string(commas=True)}; "
                          "give the FASTA the attributions were computed on")
    return sequence


def _session(region: Region, sequence: str, scores: RegionScores, label: str, chrom_size: int, fasta: Path,
             bed: tuple[str, list[str]] | None, vcf: tuple[str, list[str], list[list[str]]] | None) -> dict:
    starts, ends, values = value_runs(scores.score)
    bedgraph = "".join(f"{region.chrom}\t{region.start + s}\t{region.start + e}\t{v:.4g}\n"
                       for s, e, v in zip(starts.tolist(), ends.tolist(), values.tolist()))
    fa = f">{_locus(region.chrom, region.start, region.end)} @len={chrom_size}\n{sequence}\n"
    tracks = [{"name": label, "type": "wig", "format": "bedgraph", "url": page.data_uri(bedgraph), "color": "rgb(30,30,30)",
               "altColor": "rgb(200,60,60)", "height": 120, "autoscale": True}]
    if bed is not None:
        tracks.append({"name": bed[0], "type": "annotation", "format": "bed", "displayMode": "EXPANDED",
                       "url": page.data_uri("".join(bed[1]) or "# none\n")})
    if vcf is not None:
        name, header, records = vcf
        text = "\n".join(header + ["\t".join(r) for r in records]) + "\n"
        tracks.append({"name": name, "type": "variant", "format": "vcf", "url": page.data_uri(text), "indexed": False})
    return {"reference": {"id": fasta.stem, "name": fasta.name, "fastaURL": page.data_uri(fa), "indexed": False},
            "tracks": tracks, "loadDefaultGenomes": False, "showCircularViewButton": False}


def _top_links(scores: RegionScores, count: int) -> list[tuple[str, str]]:
    magnitude = np.nan_to_num(np.abs(scores.score), nan=-1.0)
    bases = scores.sequence()
    r = scores.region
    links = []
    for i in np.argsort(-magnitude, kind="stable")[:count]:
        i = int(i)
        pos = r.start + i
        links.append((f"{pos + 1:,} {bases[i]} {scores.score[i]:.3g}",
                      _locus(r.chrom, max(r.start, pos - FLANK), min(r.end, pos + FLANK + 1))))
    return links


def _write_bigwig(path: Path, h5: AttributionFile, regions: list[Region], sizes: dict[str, int], force: bool) -> None:
    a = h5.attrs
    metadata = RunMetadata(str(a.get("method", "?")), str(a.get("target", "?")), str(a.get("model_id", "?")),
                           str(a.get("model_checksum", "")), bool(a.get("model_trained", False)), str(a.get("engine", "?")),
                           str(a.get("dtype", "?")), str(a.get("tool_version", "?")))
    with open_writer(path, "bigwig", metadata, sizes, force=force, label=TrackLabel(f"pgf {metadata.method}", "")) as writer:
        for region in regions:
            writer.add_values(region, h5.load(region).score)


def run_report(request: ReportRequest, reporter: Reporter | None = None) -> list[Region]:
    """Write the page and/or the IGV session; return the regions they show."""
    reporter = reporter or SilentReporter()
    if request.output is None and request.igv_session is None:
        raise PgfUserError("nothing to write: give -o REPORT.html and/or --igv-session SESSION.xml")
    bigwig = request.bigwig or (request.igv_session.with_suffix(".bw") if request.igv_session else None)
    for path in (request.output, request.igv_session, bigwig):
        if path is not None:
            check_output_path(path, request.force)
    igv = igv_js() if request.output is not None else None
    bed_elements = read_bed_elements(request.bed) if request.bed else None
    vcf = _vcf_lines(request.vcf) if request.vcf else None
    with AttributionFile(request.h5) as h5, Genome(request.fasta) as genome:
        shown = [h5.find(spec) for spec in request.regions] if request.regions else [(r, r) for r in h5.regions]
        warning = naming_warning({r.chrom for _, r in shown})
        if warning:
            reporter.warn(warning)
        label = f"pgf {h5.attrs.get('method', 'score')}"
        sessions, region_rows, variant_rows = [], [], []
        for index, (owner, region) in enumerate(shown):
            progress = reporter.region_started([region], index, len(shown))
            scores = h5.load(owner).crop(region)
            sequence = _check_sequence(genome, scores, request.h5)
            if igv is not None:
                bed = (request.bed.name, [f"{e.chrom}\t{e.start}\t{e.end}\t{e.name or '.'}\n" for e in overlapping(bed_elements, region)]) \
                    if bed_elements is not None else None
                records = [r for r in vcf[1] if r[0] == region.chrom and region.start < int(r[1]) <= region.end] if vcf else []
                sessions.append(_session(region, sequence, scores, label, genome.chrom_sizes[region.chrom], request.fasta,
                                         bed, (request.vcf.name, vcf[0], records) if vcf else None))
                locus = _locus(region.chrom, region.start, region.end)
                target = f"{scores.target_value:.4g}" if owner == region else "(part of a region)"
                region_rows.append(page.Row([region.name or "", region.to_string(commas=True), f"{len(region):,}", target],
                                            len(sessions) - 1, locus, _top_links(scores, request.top)))
                for r in records:
                    pos = int(r[1]) - 1
                    variant_rows.append(page.Row(
                        [r[2], f"{r[0]}:{pos + 1:,} {r[3]}>{r[4]}", f"{scores.score[pos - region.start]:.4g}", region.to_string(commas=True)],
                        len(sessions) - 1, _locus(region.chrom, max(region.start, pos - FLANK), min(region.end, pos + FLANK + 1))))
            progress(1, 1)
        if igv is not None:
            tables = [page.Table("Regions (click a row; a top base goes to it)", ["name", "region", "bp", "target", "top bases (|score|)"], region_rows)]
            if vcf is not None:
                tables.append(page.Table("Variants in the regions", ["id", "variant", "score at the base", "region"], variant_rows))
            note = (f"{request.h5.name}: {h5.attrs.get('method', '?')} of {h5.attrs.get('target', '?')}, model {h5.attrs.get('model_id', '?')}; "
                    f"genome {request.fasta.name}; the track shows scores to 4 significant digits.")
            text = page.render(f"pgf report: {request.h5.name}", note, sessions, tables, igv)
            output = AtomicOutput(request.output, force=request.force)
            try:
                output.temp_path.write_text(text, encoding="utf-8")
                output.commit()
            finally:
                output.abort()
            reporter.info(f"wrote {request.output} ({len(shown)} region{'s' if len(shown) != 1 else ''}, {len(text) / 1e6:.1f} MB)")
            if len(text) > LARGE_PAGE:
                reporter.warn(f"the page is {len(text) / 1e6:.0f} MB; browsers slow down on pages this large: "
                              "show fewer regions (--region) or open the IGV session's bigWig instead")
        if request.igv_session is not None:
            owners = list(dict.fromkeys(owner for owner, _ in shown))
            _write_bigwig(bigwig, h5, owners, dict(genome.chrom_sizes), request.force)
            tracks = [(bigwig, label)] + ([(request.bed, request.bed.name)] if request.bed else []) + \
                     ([(request.vcf, request.vcf.name)] if request.vcf else [])
            write_igv_session(request.igv_session, request.fasta, tracks, shown[0][1], request.force)
            reporter.info(f"wrote {request.igv_session} and {bigwig}")
    return [region for _, region in shown]
