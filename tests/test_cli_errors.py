"""`pgf attribute` failure modes: user errors, internal errors, interruptions.

The contract (README, "Exit codes"): a user error exits 2 with a one-line
`error: ...` on stderr and no traceback; an internal error exits 1; Ctrl-C
exits 130 (SIGTERM 143). No output file and no temporary `.NAME.*.part` file is
left behind and an existing output is untouched; regions completed before a
failure stay in the visible partial output `NAME.partial/`, which `--resume`
continues (nothing is kept when no region completed).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.engine import TiledEngine
from helpers import random_sequence, write_fasta

CHROM_SIZES = {"chr1": 1200, "chr2": 600}




@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> Path:
    records = {name: random_sequence(size, seed) for seed, (name, size) in enumerate(CHROM_SIZES.items())}
    return write_fasta(tmp_path_factory.mktemp("genome") / "test.fa", records)


@pytest.fixture
def out_dir(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def attribute(genome: Path, output: Path, *args: object, model: str | None = "random-test"):
    model_args = ["--model", model] if model is not None else []
    return invoke("attribute", genome, *model_args, "-o", output, *args)


def assert_user_error(result, *fragments: str) -> str:
    """Exit 2, exactly one `error: ...` line (last on stderr), no traceback; returns the message."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines, "no message on stderr"
    assert all(line.strip() for line in lines), f"blank line on stderr: {result.stderr!r}"
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]], result.stderr
    assert all(line.startswith("WARNING: ") for line in lines[:-1]), result.stderr
    message = lines[-1]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert result.stdout == ""
    return message


def leftovers(folder: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Files in `folder` other than `keep` (outputs or `.NAME.*.part` temporaries)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# --------------------------------------------------------------------------- user errors (exit 2)

Case = Callable[[Path, Path, Path], list]  # (genome, inputs folder, output folder) -> arguments


def write_bed(folder: Path, text: str) -> Path:
    path = folder / "regions.bed"
    path.write_text(text)
    return path


def plain_gzip_fasta(folder: Path, genome: Path) -> Path:
    path = folder / "genome.fa.gz"
    path.write_bytes(gzip.compress(genome.read_bytes()))
    return path


def fasta_with_digits(folder: Path) -> Path:
    return write_fasta(folder / "digits.fa", {"chr1": "ACGTACGT12ACGTACGTAC" * 5})


USER_ERRORS: dict[str, tuple[Case, list[str]]] = {
    "missing FASTA": (
        lambda g, i, o: [i / "absent.fa", "--region", "chr1:1-10", "--model", "random-test", "-o", o / "x.h5"],
        ["FASTA file not found", "absent.fa"],
    ),
    "unknown chromosome": (
        lambda g, i, o: [g, "--region", "1:1-100", "--model", "random-test", "-o", o / "x.h5"],
        ["unknown sequence '1'", "did you mean 'chr1'"],
    ),
    "unknown chromosome in BED": (
        lambda g, i, o: [g, "--regions", write_bed(i, "chr2\t1\t50\nchrX\t1\t50\n"), "--model", "random-test", "-o", o / "x.h5"],
        ["regions.bed:2", "unknown sequence 'chrX'"],
    ),
    "end past chromosome end": (
        lambda g, i, o: [g, "--region", "chr2:501-601", "--model", "random-test", "-o", o / "x.h5"],
        ["ends past the end of chr2", "600 bp"],
    ),
    "start after end": (
        lambda g, i, o: [g, "--region", "chr1:100-50", "--model", "random-test", "-o", o / "x.h5"],
        ["start 100 is after its end 50"],
    ),
    "zero start": (
        lambda g, i, o: [g, "--region", "chr1:0-50", "--model", "random-test", "-o", o / "x.h5"],
        ["1-based"],
    ),
    "empty BED region": (
        lambda g, i, o: [g, "--regions", write_bed(i, "chr1\t10\t10\n"), "--model", "random-test", "-o", o / "x.h5"],
        ["regions.bed:1", "empty"],
    ),
    "BED line with two columns": (
        lambda g, i, o: [g, "--regions", write_bed(i, "chr1\t0\t100\nchr1\t200\n"), "--model", "random-test", "-o", o / "x.h5"],
        ["regions.bed:2", "at least 3 columns"],
    ),
    "BED line with text coordinates": (
        lambda g, i, o: [g, "--regions", write_bed(i, "chr1\tstart\t100\n"), "--model", "random-test", "-o", o / "x.h5"],
        ["regions.bed:1", "whole numbers"],
    ),
    "BED without regions": (
        lambda g, i, o: [g, "--regions", write_bed(i, "# nothing\n"), "--model", "random-test", "-o", o / "x.h5"],
        ["holds no regions"],
    ),
    "missing BED": (
        lambda g, i, o: [g, "--regions", i / "absent.bed", "--model", "random-test", "-o", o / "x.h5"],
        ["BED file not found"],
    ),
    "no region": (
        lambda g, i, o: [g, "--model", "random-test", "-o", o / "x.h5"],
        ["no region given", "--region"],
    ),
    "unknown output suffix": (
        lambda g, i, o: [g, "--region", "chr1:1-10", "--model", "random-test", "-o", o / "x.txt"],
        ["cannot tell the output format", "--format"],
    ),
    "output folder missing": (
        lambda g, i, o: [g, "--region", "chr1:1-10", "--model", "random-test", "-o", o / "nowhere" / "x.h5"],
        ["output folder", "does not exist"],
    ),
    "output is a folder": (
        lambda g, i, o: [g, "--region", "chr1:1-10", "--model", "random-test", "-o", i, "--format", "h5"],
        ["is a directory"],
    ),
    "model path missing": (
        lambda g, i, o: [g, "--region", "chr1:1-10", "--model", i / "no_such_model", "-o", o / "x.h5"],
        ["no_such_model", "not found"],
    ),
    "model directory without config": (
        lambda g, i, o: [g, "--region", "chr1:1-10", "--model", i, "-o", o / "x.h5"],
        ["no config.json"],
    ),
    "unknown target kind": (
        lambda g, i, o: [g, "--region", "chr1:1-10", "--model", "random-test", "--target", "max", "-o", o / "x.h5"],
        ["unknown target 'max'"],
    ),
    "unknown channel name": (
        lambda g, i, o: [g, "--region", "chr1:1-10", "--model", "random-test", "--target", "sum:dnase", "-o", o / "x.h5"],
        ["unknown channel 'dnase'", "0:signal"],
    ),
    "channel index out of range": (
        lambda g, i, o: [g, "--region", "chr1:1-10", "--model", "random-test", "--target", "sum:1", "-o", o / "x.h5"],
        ["unknown channel '1'"],
    ),
    "position outside region": (
        lambda g, i, o: [g, "--region", "chr1:1-100", "--model", "random-test", "--target", "position:101", "-o", o / "x.h5"],
        ["target position 101 lies outside region chr1:1-100"],
    ),
    "position outside the second region": (
        lambda g, i, o: [g, "-r", "chr1:1-100", "-r", "chr1:201-300", "--model", "random-test", "--target", "position:50", "-o", o / "x.h5"],
        ["outside region chr1:201-300"],
    ),
    "position zero": (
        lambda g, i, o: [g, "--region", "chr1:1-100", "--model", "random-test", "--target", "position:0", "-o", o / "x.h5"],
        ["1-based genome position"],
    ),
    "overlapping regions to bedGraph with --overlap error": (
        lambda g, i, o: [g, "-r", "chr1:1-100", "-r", "chr1:100-200", "--model", "random-test", "--overlap", "error",
                         "-o", o / "x.bedgraph"],
        ["overlap", ".h5"],
    ),
    "overlapping regions to bigWig with --overlap error": (
        lambda g, i, o: [g, "-r", "chr1:1-100", "--regions", write_bed(i, "chr1\t50\t60\n"), "--model", "random-test",
                         "--overlap", "error", "-o", o / "x.bw"],
        ["overlap"],
    ),
    "same region twice to HDF5": (
        lambda g, i, o: [g, "-r", "chr1:1-100", "-r", "chr1:1-100", "--model", "random-test", "-o", o / "x.h5"],
        ["given twice"],
    ),
    "plain gzip FASTA": (
        lambda g, i, o: [plain_gzip_fasta(i, g), "--region", "chr1:1-10", "--model", "random-test", "-o", o / "x.h5"],
        ["bgzip"],
    ),
    "digits in the FASTA sequence": (
        lambda g, i, o: [fasta_with_digits(i), "--region", "chr1:1-40", "--model", "random-test", "-o", o / "x.h5"],
        ["invalid sequence character '1' at chr1:9 ", "(4 invalid characters in chr1:1-40)"],
    ),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_user_error(genome, tmp_path, out_dir, case):
    build, fragments = USER_ERRORS[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    result = invoke("attribute", *build(genome, inputs, out_dir))
    assert_user_error(result, *fragments)
    assert leftovers(out_dir) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_device_cuda_without_cuda(genome, out_dir):
    result = attribute(genome, out_dir / "x.h5", "--region", "chr1:1-10", "--device", "cuda")
    assert_user_error(result, "--device cuda", "no CUDA device")
    assert leftovers(out_dir) == []


def test_existing_output_needs_force_and_stays_untouched(genome, out_dir):
    old = out_dir / "x.h5"
    old.write_bytes(b"previous result, not HDF5\n")
    result = attribute(genome, old, "--region", "chr1:1-10")
    assert_user_error(result, "already exists", "--force")
    assert old.read_bytes() == b"previous result, not HDF5\n"
    assert leftovers(out_dir, keep=("x.h5",)) == []
    # with --force it is replaced
    result = attribute(genome, old, "--region", "chr1:1-10", "--force")
    assert result.exit_code == 0, result.output
    assert old.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert leftovers(out_dir, keep=("x.h5",)) == []


@pytest.mark.parametrize("victim", ["fasta", "fai", "bed"])
def test_output_naming_an_input_is_refused_even_with_force(tmp_path, victim):
    fasta = write_fasta(tmp_path / "copy.fa", {"chr1": "ACGT" * 30})
    bed = write_bed(tmp_path, "chr1\t0\t10\n")
    assert invoke("attribute", fasta, "--model", "random-test", "--regions", bed, "-o", tmp_path / "first.h5").exit_code == 0
    target = {"fasta": fasta, "fai": tmp_path / "copy.fa.fai", "bed": bed}[victim]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = invoke("attribute", fasta, "--model", "random-test", "--regions", bed,
                    "-o", target, "--format", "h5", "--force")
    what = {"fasta": "the FASTA", "fai": "the FASTA index", "bed": "the BED file"}[victim]
    assert_user_error(result, f"is {what}", "choose another output path")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_debug_shows_the_traceback_of_a_user_error(genome, out_dir):
    missing = out_dir / "no_such_model"
    result = invoke("--debug", "attribute", genome, "--model", missing, "--region", "chr1:1-10", "-o", out_dir / "x.h5")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: model")
    # the setting does not leak into the next invocation
    result = attribute(genome, out_dir / "x.h5", "--model", missing, "--region", "chr1:1-10", model=None)
    assert_user_error(result, "not found")


@pytest.mark.parametrize(
    "args, option",
    [
        (["--method", "saliency"], "--method"),
        (["--tile", "0"], "--tile"),
        (["--device", "tpu"], "--device"),
        (["--dtype", "float16"], "--dtype"),
        (["--format", "csv"], "--format"),
        (["--engine", "fast"], "--engine"),
    ],
)
def test_usage_errors_exit_2(genome, out_dir, args, option):
    result = attribute(genome, out_dir / "x.h5", "--region", "chr1:1-10", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert option in result.output
    assert leftovers(out_dir) == []


def test_missing_output_option_is_a_usage_error(genome):
    result = invoke("attribute", genome, "--model", "random-test", "--region", "chr1:1-10")
    assert result.exit_code == 2
    assert "--output" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- failures during the run


def fail_on_call(monkeypatch, number: int, exception: BaseException) -> dict[str, int]:
    """Make the default (PGF adjoint) engine raise `exception` on its `number`-th call (1-based)."""
    original = TiledEngine.gradient
    calls = {"n": 0}

    def gradient(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == number:
            raise exception
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TiledEngine, "gradient", gradient)
    return calls


TWO_REGIONS = ["--region", "chr1:1-200", "--region", "chr2:1-200", "--batch-size", "1"]  # two engine calls


@pytest.mark.parametrize("name", ["x.h5", "x.bedgraph", "x.bw"])
def test_internal_error_on_second_region_keeps_the_first_for_resume(genome, out_dir, monkeypatch, name):
    calls = fail_on_call(monkeypatch, 2, RuntimeError("engine exploded"))
    result = attribute(genome, out_dir / name, *TWO_REGIONS)
    assert calls["n"] == 2
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("internal error: RuntimeError: engine exploded")
    assert "--debug" in last
    assert "chr1:1-200  200 bp" in result.stderr  # the first region finished before the failure
    assert f"1 of 2 regions are kept in {out_dir / name}.partial" in result.stderr
    assert leftovers(out_dir) == [f"{name}.partial"]  # no output, no hidden temporary
    monkeypatch.undo()
    resumed = attribute(genome, out_dir / name, *TWO_REGIONS, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "1 of 2 regions already done (skipped)" in resumed.stderr
    assert "chr1:1-200  200 bp" not in resumed.stderr and "chr2:1-200  200 bp" in resumed.stderr
    assert leftovers(out_dir) == [name]


@pytest.mark.parametrize("name", ["x.h5", "x.bg"])
def test_internal_error_with_force_keeps_the_old_output(genome, out_dir, monkeypatch, name):
    old = out_dir / name
    content = bytes(range(256)) * 4
    old.write_bytes(content)
    fail_on_call(monkeypatch, 2, ValueError("bad numbers"))
    result = attribute(genome, old, *TWO_REGIONS, "--force")
    assert result.exit_code == 1, result.output
    assert "internal error: ValueError: bad numbers" in result.stderr
    assert old.read_bytes() == content
    assert leftovers(out_dir, keep=(name,)) == [f"{name}.partial"]


def test_keyboard_interrupt_in_the_first_batch_exits_130_and_writes_nothing(genome, out_dir, monkeypatch):
    fail_on_call(monkeypatch, 1, KeyboardInterrupt())
    result = attribute(genome, out_dir / "new.h5", *TWO_REGIONS)
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == "interrupted; no output was written"
    assert leftovers(out_dir) == []


def test_keyboard_interrupt_later_keeps_what_is_done_and_says_how_to_resume(genome, out_dir, monkeypatch):
    fail_on_call(monkeypatch, 2, KeyboardInterrupt())
    result = attribute(genome, out_dir / "new.h5", *TWO_REGIONS)
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted; 1 of 2 regions are saved in {out_dir / 'new.h5.partial'}; to finish, run: pgf ")
    assert last.endswith(" --resume")
    assert leftovers(out_dir) == ["new.h5.partial"]


def test_keyboard_interrupt_with_force_keeps_the_old_output(genome, out_dir, monkeypatch):
    old = out_dir / "kept.bw"
    old.write_bytes(b"old output\n")
    fail_on_call(monkeypatch, 2, KeyboardInterrupt())
    result = attribute(genome, old, *TWO_REGIONS, "--force")
    assert result.exit_code == 130, result.output
    assert "1 of 2 regions are saved" in result.stderr
    assert old.read_bytes() == b"old output\n"
    assert leftovers(out_dir, keep=("kept.bw",)) == ["kept.bw.partial"]


# --------------------------------------------------------------------------- the real entry point


@pytest.mark.slow
def test_python_m_pgf_propagates_exit_codes(genome, out_dir):
    version = subprocess.run([sys.executable, "-m", "pgf", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.startswith("pgf ")
    proc = subprocess.run(
        [sys.executable, "-m", "pgf", "attribute", str(genome), "--model", "random-test",
         "--region", "chrZ:1-10", "-o", str(out_dir / "x.h5")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown sequence 'chrZ' in the FASTA; did you mean ")
    assert "'chr1'" in lines[0]
    assert leftovers(out_dir) == []
