"""IGV desktop sessions and genome-browser naming: what lets a track open in IGV or UCSC."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from pgf.io.atomic import AtomicOutput
from pgf.io.regions import Region

_ASSEMBLY_NAME = re.compile(r"^(chr)?([1-9]|1[0-9]|2[0-9]|X|Y|M|MT|W|Z)$", re.IGNORECASE)


def unusual_names(names: Iterable[str]) -> list[str]:
    """Sequence names unlike a browser assembly's (chr1..chrY, chrM, 1..22, X, Y, MT): likely a mismatch."""
    return sorted({n for n in names if not _ASSEMBLY_NAME.match(n)})


def naming_warning(names: Iterable[str]) -> str | None:
    """A warning when the tracks' sequence names would likely not match a UCSC/IGV assembly, else None."""
    odd = unusual_names(names)
    if not odd:
        return None
    shown = ", ".join(odd[:5]) + (f", ... ({len(odd)} in all)" if len(odd) > 5 else "")
    return (f"sequence names {shown} do not look like a browser assembly's (chr1..chr22, chrX, chrY, chrM or 1..22, X, Y, MT); "
            "tracks use the FASTA's names, so a mismatch with a UCSC or IGV assembly is likely (open them with this FASTA as the genome)")


def _relative(path: Path, folder: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), folder.resolve())
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def write_igv_session(path: Path, fasta: Path, tracks: list[tuple[Path, str]], locus: Region, force: bool) -> None:
    """An IGV desktop session (XML) that opens `fasta` as the genome and each (file, name) track,
    with paths relative to the session's folder."""
    folder = path.parent
    session = ET.Element("Session", genome=_relative(fasta, folder), hasGeneTrack="false", hasSequenceTrack="true",
                         locus=f"{locus.chrom}:{locus.start + 1}-{locus.end}", version="8")
    resources = ET.SubElement(session, "Resources")
    for track, name in tracks:
        ET.SubElement(resources, "Resource", name=name, path=_relative(track, folder))
    ET.indent(session)
    output = AtomicOutput(path, force=force)
    try:
        ET.ElementTree(session).write(output.temp_path, encoding="UTF-8", xml_declaration=True)
        output.commit()
    finally:
        output.abort()
