"""A full disk (or any write the disk fails) is a one-line error naming the path and the cause: exit 2,
no traceback, no temporary files, every finished region kept; --resume then completes the job with
the numbers of a clean run."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.io import partial

from test_batch_processes import REGION_ARGS, REGIONS, batches, genome, single  # noqa: F401
from test_batch_resume import assert_same_groups


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def run(genome, output, *extra):  # noqa: F811
    return invoke("attribute", genome, "--model", "random-test", "--device", "cpu", "--batch-size", 1, "-o", output,
                  *REGION_ARGS, *extra)


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".part"))]


def test_an_injected_enospc_is_a_clear_error_and_resume_completes(genome, single, tmp_path, monkeypatch):  # noqa: F811
    output = tmp_path / "out.h5"
    commits = []
    original = os.replace

    def replace(source, destination):  # the 4th batch file's write is refused by the disk
        if Path(destination).name.startswith("batch-"):
            commits.append(Path(destination))
            if len(commits) == 4:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(source, destination)

    monkeypatch.setattr(partial.os, "replace", replace)
    result = run(genome, output)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == f"error: cannot write {commits[3]}: No space left on device"
    assert "3 of 16 regions are kept" in result.stderr
    assert len(batches(output)) == 3 and not temporaries(tmp_path) and not output.exists()
    monkeypatch.setattr(partial.os, "replace", original)
    result = run(genome, output, "--resume")
    assert result.exit_code == 0, result.output
    assert_same_groups(output, single)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


@pytest.fixture
def small_filesystem(tmp_path):
    """A 256-kB tmpfs (root only; skipped where mounting is not allowed)."""
    folder = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_filesystem_then_resume_on_another_disk(genome, single, tmp_path, small_filesystem):  # noqa: F811
    """The partial output fills a 256-kB filesystem; moved to another disk, --resume finishes it."""
    regions = REGION_ARGS * 1
    full = small_filesystem / "out.h5"
    command = [sys.executable, "-m", "pgf", "attribute", str(genome), "--model", "random-test", "--device", "cpu",
               "--batch-size", "1", "--dtype", "float64", "-o", str(full), *regions]
    ended = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if ended.returncode == 0:
        pytest.skip("the run fit in 256 kB")
    assert ended.returncode == 2, ended.stderr
    last = ended.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {small_filesystem}") and last.endswith(": No space left on device"), last
    assert "Traceback" not in ended.stderr and not temporaries(small_filesystem) and not full.exists()
    kept = len(batches(full))
    assert 0 < kept < len(REGIONS)
    moved = tmp_path / "out.h5"
    shutil.move(str(full) + ".partial", str(moved) + ".partial")
    resumed = run(genome, moved, "--dtype", "float64", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"{kept} of {len(REGIONS)} regions already done" in resumed.stderr
    clean = tmp_path / "clean.h5"
    assert run(genome, clean, "--dtype", "float64").exit_code == 0
    assert_same_groups(moved, clean)


def test_the_final_output_needs_the_space_of_its_parts(genome, single, tmp_path, monkeypatch):  # noqa: F811
    """Assembling OUT from OUT.partial on a disk without room for it is refused before HDF5 writes a byte;
    the partial output stays, and --resume assembles it once there is room."""
    import shutil as shutil_module
    from collections import namedtuple

    output = tmp_path / "out.h5"
    usage = namedtuple("usage", "total used free")
    real = shutil_module.disk_usage
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    result = run(genome, output)
    assert result.exit_code == 2 and "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {output}: No space left on device (it needs about ") and last.endswith("0.0 MB are free)")
    assert len(batches(output)) == len(REGIONS) and not temporaries(tmp_path) and not output.exists()
    monkeypatch.setattr(shutil_module, "disk_usage", real)
    assert run(genome, output, "--resume").exit_code == 0
    assert_same_groups(output, single)


@pytest.mark.slow
def test_a_full_filesystem_while_a_chromosome_streams(tmp_path, small_filesystem):
    """A whole sequence in windows streams into its batch file: the disk filling up mid-stream is the
    same one-line error, not a crash, and nothing is left behind."""
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "genome.fa"
    command = [sys.executable, "-m", "pgf", "attribute", str(sample), "--region", "chr1", "--window", "4096",
               "--stride", "4096", "--model", "random-test", "-o", str(small_filesystem / "w.h5")]
    ended = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert ended.returncode == 2, ended.stderr
    assert ended.stderr.strip().splitlines()[-1] == f"error: cannot write {small_filesystem}/w.h5.partial: No space left on device"
    assert "Traceback" not in ended.stderr and list(small_filesystem.iterdir()) == []
