"""--resume checks what it resumes: every batch file is as it was written (a truncated or changed one is
removed and its regions computed again, never merged), and every stored region was computed on the
bases the FASTA has now (another FASTA with the same names and lengths is refused, naming the region)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.io import partial

from helpers import random_sequence, write_fasta
from test_batch_resume import assert_same_groups

REGIONS = ["chr1:1-200", "chr1:301-520", "chr1:601-840", "chr2:1-260", "chr2:401-680"]
ARGS = [a for r in REGIONS for a in ("--region", r)]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def attribute(fasta, output, *extra):
    return invoke("attribute", fasta, "--model", "random-test", "--device", "cpu", "--batch-size", 1, "--dtype", "float64",
                  "-o", output, *ARGS, *extra)


def stopped_after_three_batches(fasta: Path, output: Path, monkeypatch) -> list[Path]:
    """A run whose 4th batch the disk refuses: 3 batch files stay in OUT.partial."""
    original, seen = os.replace, []

    def replace(source, destination):
        if Path(destination).name.startswith("batch-"):
            seen.append(destination)
            if len(seen) == 4:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(source, destination)

    monkeypatch.setattr(partial.os, "replace", replace)
    assert attribute(fasta, output).exit_code == 2
    monkeypatch.setattr(partial.os, "replace", original)
    files = sorted(partial.partial_path(output).glob("batch-*.h5"))
    assert len(files) == 3
    return files


def genome(folder: Path, seed: int = 5) -> Path:
    return write_fasta(folder / "g.fa", {"chr1": random_sequence(900, seed), "chr2": random_sequence(700, seed + 1)})


def test_a_truncated_batch_file_is_computed_again(tmp_path, monkeypatch):
    fasta = genome(tmp_path)
    clean = tmp_path / "clean.h5"
    assert attribute(fasta, clean).exit_code == 0
    output = tmp_path / "out.h5"
    damaged = stopped_after_three_batches(fasta, output, monkeypatch)[1]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    result = attribute(fasta, output, "--resume")
    assert result.exit_code == 0, result.output
    assert f"WARNING: {damaged.name} in {damaged.parent} is damaged (truncated or changed since it was written); " \
           "its regions are computed again" in result.stderr
    assert "2 of 5 regions already done (skipped), 3 to compute" in result.stderr
    assert_same_groups(output, clean)


def test_a_changed_batch_file_is_computed_again(tmp_path, monkeypatch):
    """Same length, other bytes (a flipped bit in a value): the digest in its name tells."""
    fasta = genome(tmp_path)
    output = tmp_path / "out.h5"
    changed = stopped_after_three_batches(fasta, output, monkeypatch)[0]
    data = bytearray(changed.read_bytes())
    data[-100] ^= 0x01
    changed.write_bytes(bytes(data))
    result = attribute(fasta, output, "--resume")
    assert result.exit_code == 0, result.output
    assert f"{changed.name} in {changed.parent} is damaged" in result.stderr


def test_a_fasta_with_the_same_layout_but_other_bases_is_refused(tmp_path, monkeypatch):
    fasta = genome(tmp_path)
    output = tmp_path / "out.h5"
    stopped_after_three_batches(fasta, output, monkeypatch)
    index = Path(f"{fasta}.fai").read_text()
    genome(tmp_path, seed=11)  # the same names and lengths (so the same .fai), other bases
    assert Path(f"{fasta}.fai").read_text() == index
    result = attribute(fasta, output, "--resume")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {output}.partial holds chr1:1-200 computed on other bases than {fasta} has there (another FASTA with "
        "the same sequence names and lengths?); resume with the FASTA it was computed on, or use --force to start again")
    assert len(list(partial.partial_path(output).glob("batch-*.h5"))) == 3 and not output.exists()
