"""`pgf attribute` end to end: regions in, numbers out, in every format, for every method and target.

Most runs go through Typer's CliRunner (in process, fast); the README's sample
job runs through the real console script. Every number written is checked
against an independent computation: a direct `torch.autograd` pass on the
`random-test` model, and the method formulas written out here from the README.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyBigWig
import pyfaidx
import pytest
import torch
from typer.testing import CliRunner

import pgf
from pgf.cli.app import app
from pgf.models.registry import load_model
from helpers import random_sequence, write_fasta

REPO = Path(__file__).resolve().parents[1]
BASES = "ACGT"
METHODS = ("gradient", "input-x-gradient", "hypothetical", "taylor-ism")

# The test genome: chr1 1,500 bp with an N run at 0-based [300, 320) and a
# soft-masked (lower-case) stretch at [400, 500); chr2 800 bp.
N_RUN = (300, 320)
SOFT_MASKED = (400, 500)
CHROM_SIZES = {"chr1": 1500, "chr2": 800}


def make_sequences() -> dict[str, str]:
    chr1 = list(random_sequence(CHROM_SIZES["chr1"], seed=1))
    chr1[N_RUN[0] : N_RUN[1]] = "N" * (N_RUN[1] - N_RUN[0])
    chr1[SOFT_MASKED[0] : SOFT_MASKED[1]] = [c.lower() for c in chr1[SOFT_MASKED[0] : SOFT_MASKED[1]]]
    return {"chr1": "".join(chr1), "chr2": random_sequence(CHROM_SIZES["chr2"], seed=2)}


SEQUENCES = make_sequences()



def encode(sequence: str) -> np.ndarray:
    """Independent one-hot (L, 4) uint8: A C G T columns, any case; anything else all-zero."""
    out = np.zeros((len(sequence), 4), dtype=np.uint8)
    for i, base in enumerate(sequence.upper()):
        if base in BASES:
            out[i, BASES.index(base)] = 1
    return out


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> Path:
    return write_fasta(tmp_path_factory.mktemp("genome") / "test.fa", SEQUENCES)


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def attribute(genome: Path, output: Path, *args: object):
    """Run `pgf attribute GENOME --model random-test -o OUTPUT ARGS...`; it must succeed.

    Runs on the CPU unless ARGS name a device, so that the numbers can be
    compared tightly with the CPU reference below on a machine with a GPU too.
    """
    device = [] if "--device" in args else ["--device", "cpu"]
    result = invoke("attribute", genome, "--model", "random-test", "-o", output, *device, *args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def read_h5(path: Path) -> dict[str, dict]:
    """{group name: {"attrs": {...}, dataset name: array}} plus "/" for the root attributes."""
    out: dict[str, dict] = {}
    with h5py.File(path, "r") as handle:
        out["/"] = {"attrs": dict(handle.attrs)}
        for name, group in handle.items():
            entry = {key: group[key][()] for key in group}
            entry["attrs"] = dict(group.attrs)
            entry["dtypes"] = {key: group[key].dtype for key in group}
            out[name] = entry
    return out


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".part")]


@functools.lru_cache(maxsize=None)
def reference_model(dtype: torch.dtype = torch.float32):
    return load_model("random-test", dtype=dtype).model


def direct_gradient(onehot: np.ndarray, position: int | None = None, dtype: torch.dtype = torch.float32):
    """d f / d onehot by plain torch.autograd: f = sum of the track, or its value at `position` (offset)."""
    inputs = torch.from_numpy(onehot).to(dtype).unsqueeze(0).requires_grad_(True)
    track = reference_model(dtype)(inputs)["track"][0, :, 0]
    value = track.sum() if position is None else track[position]
    (gradient,) = torch.autograd.grad(value, inputs)
    return gradient[0].detach().numpy(), float(value.detach())


def assert_gradient_close(stored: np.ndarray, expected: np.ndarray, rtol: float = 1e-6) -> None:
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(stored, expected, rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------- regions


def test_region_is_one_based_inclusive_with_commas(genome, tmp_path):
    out = tmp_path / "r.h5"
    result = attribute(genome, out, "--region", "chr1:1,001-1,400")
    data = read_h5(out)
    assert sorted(data) == ["/", "chr1:1001-1400"]
    group = data["chr1:1001-1400"]
    assert group["attrs"]["chrom"] == "chr1"
    assert int(group["attrs"]["start"]) == 1000
    assert int(group["attrs"]["end"]) == 1400
    assert "name" not in group["attrs"]
    np.testing.assert_array_equal(group["onehot"], encode(SEQUENCES["chr1"][1000:1400]))
    assert group["score"].shape == (400,)
    assert group["gradient"].shape == (400, 4)
    assert re.search(r"^chr1:1,001-1,400  400 bp  ", result.stderr, re.M)
    assert f"wrote {out} (1 region, 400 bp)" in result.stderr


def test_whole_sequence_region(genome, tmp_path):
    out = tmp_path / "whole.h5"
    attribute(genome, out, "--region", "chr2")
    group = read_h5(out)["chr2:1-800"]
    assert (int(group["attrs"]["start"]), int(group["attrs"]["end"])) == (0, 800)
    np.testing.assert_array_equal(group["onehot"], encode(SEQUENCES["chr2"]))


def test_bed_regions_keep_their_names(genome, tmp_path):
    bed = tmp_path / "regions.bed"
    bed.write_text(
        'track name="mine"\n# a comment\n\nchr1\t250\t550\tacross_gap\nchr2 10 110\nchr1\t1000\t1200\tlate\n'
    )
    out = tmp_path / "bed.h5"
    result = attribute(genome, out, "--regions", bed)
    data = read_h5(out)
    assert sorted(data) == ["/", "chr1:1001-1200", "chr1:251-550", "chr2:11-110"]
    assert data["chr1:251-550"]["attrs"]["name"] == "across_gap"
    assert data["chr1:1001-1200"]["attrs"]["name"] == "late"
    assert "name" not in data["chr2:11-110"]["attrs"]
    assert (int(data["chr2:11-110"]["attrs"]["start"]), int(data["chr2:11-110"]["attrs"]["end"])) == (10, 110)
    np.testing.assert_array_equal(data["chr2:11-110"]["onehot"], encode(SEQUENCES["chr2"][10:110]))
    # one summary line per region, in input order, with name, length and masked bases
    lines = [line for line in result.stderr.splitlines() if re.match(r"chr\d:", line)]
    assert [line.split("  ")[0] for line in lines] == ["chr1:251-550 (across_gap)", "chr2:11-110", "chr1:1,001-1,200 (late)"]
    assert lines[0].split("  ")[1] == "300 bp, 20 masked"
    assert lines[1].split("  ")[1] == "100 bp"
    assert lines[2].split("  ")[1] == "200 bp"
    assert f"wrote {out} (3 regions, 600 bp)" in result.stderr


def test_several_region_options_and_bed_together(genome, tmp_path):
    bed = tmp_path / "one.bed"
    bed.write_text("chr2\t500\t600\tfrom_bed\n")
    out = tmp_path / "several.h5"
    result = attribute(genome, out, "--region", "chr1:1-100", "-r", "chr1:101-250", "--regions", bed)
    data = read_h5(out)
    assert sorted(data) == ["/", "chr1:1-100", "chr1:101-250", "chr2:501-600"]
    assert data["chr2:501-600"]["attrs"]["name"] == "from_bed"
    assert [len(data[g]["score"]) for g in ("chr1:1-100", "chr1:101-250", "chr2:501-600")] == [100, 150, 100]
    for label, length in (("chr1:1-100", 100), ("chr1:101-250", 150), ("chr2:501-600 (from_bed)", 100)):
        assert re.search(rf"^{re.escape(label)}  {length} bp  ", result.stderr, re.M), result.stderr


def test_overlapping_regions_are_fine_in_hdf5(genome, tmp_path):
    out = tmp_path / "overlap.h5"
    attribute(genome, out, "--region", "chr1:1-200", "--region", "chr1:101-300")
    data = read_h5(out)
    assert sorted(data) == ["/", "chr1:1-200", "chr1:101-300"]


# --------------------------------------------------------------------------- HDF5 contents


def test_hdf5_attributes_and_warning(genome, tmp_path):
    out = tmp_path / "attrs.h5"
    result = attribute(genome, out, "--region", "chr2:1-300")
    data = read_h5(out)
    expected = {
        "method": "input-x-gradient",
        "target": "sum:signal",
        "model_id": "random-test",
        "model_checksum": load_model("random-test").info.checksum,
        "engine": "pgf",
        "dtype": "float32",
        "tool_version": pgf.__version__,
    }
    assert re.fullmatch(r"[0-9a-f]{64}", expected["model_checksum"])
    group = data["chr2:1-300"]
    for attrs in (data["/"]["attrs"], group["attrs"]):
        for key, value in expected.items():
            assert attrs[key] == value, key
        assert bool(attrs["model_trained"]) is False
    assert group["dtypes"] == {"gradient": np.float32, "score": np.float32, "onehot": np.uint8}
    _, value = direct_gradient(group["onehot"])
    assert float(group["attrs"]["target_value"]) == pytest.approx(value, rel=1e-5)
    assert "WARNING: model 'random-test' is a tiny randomly initialised network" in result.stderr
    assert "untrained" in result.stderr
    assert result.stdout == ""


def test_gradient_equals_direct_autograd(genome, tmp_path):
    out = tmp_path / "grad.h5"
    attribute(genome, out, "--region", "chr1:201-700")
    group = read_h5(out)["chr1:201-700"]
    onehot = encode(SEQUENCES["chr1"][200:700])
    np.testing.assert_array_equal(group["onehot"], onehot)
    expected, value = direct_gradient(onehot)
    assert_gradient_close(group["gradient"], expected)
    assert float(group["attrs"]["target_value"]) == pytest.approx(value, rel=1e-6)
    # soft-masked bases count as bases; N rows are all zero
    assert group["onehot"][SOFT_MASKED[0] - 200 : SOFT_MASKED[1] - 200].sum() == SOFT_MASKED[1] - SOFT_MASKED[0]
    assert group["onehot"][N_RUN[0] - 200 : N_RUN[1] - 200].sum() == 0


def test_default_device_auto(genome, tmp_path):
    """--device auto (the default) runs on CUDA when visible: same numbers to GPU accuracy."""
    out = tmp_path / "auto.h5"
    attribute(genome, out, "--region", "chr2:1-300", "--device", "auto")
    group = read_h5(out)["chr2:1-300"]
    expected, value = direct_gradient(encode(SEQUENCES["chr2"][:300]))
    tolerance = 1e-6 if not torch.cuda.is_available() else 1e-3
    assert_gradient_close(group["gradient"], expected, rtol=tolerance)
    assert float(group["attrs"]["target_value"]) == pytest.approx(value, rel=tolerance)


@pytest.mark.parametrize("spec", [None, "sum", "sum:0", "sum:signal"])
def test_sum_targets(genome, tmp_path, spec):
    out = tmp_path / "sum.h5"
    attribute(genome, out, "--region", "chr2:101-400", *(["--target", spec] if spec else []))
    group = read_h5(out)["chr2:101-400"]
    assert group["attrs"]["target"] == "sum:signal"
    expected, value = direct_gradient(encode(SEQUENCES["chr2"][100:400]))
    assert float(group["attrs"]["target_value"]) == pytest.approx(value, rel=1e-6)
    assert_gradient_close(group["gradient"], expected)


@pytest.mark.parametrize("spec", ["position:1,101", "position:1101:0", "position:1101:signal"])
def test_position_target(genome, tmp_path, spec):
    out = tmp_path / "position.h5"
    attribute(genome, out, "--region", "chr1:1001-1400", "--target", spec)
    group = read_h5(out)["chr1:1001-1400"]
    assert group["attrs"]["target"] == "position:1101:signal"
    onehot = encode(SEQUENCES["chr1"][1000:1400])
    # genome position 1,101 (1-based) is offset 100 of a region starting at 1,001
    expected, value = direct_gradient(onehot, position=100)
    assert float(group["attrs"]["target_value"]) == pytest.approx(value, rel=1e-6)
    assert_gradient_close(group["gradient"], expected)
    _, total = direct_gradient(onehot)
    assert float(group["attrs"]["target_value"]) != pytest.approx(total)


def test_dtype_float64(genome, tmp_path):
    out = tmp_path / "f64.h5"
    attribute(genome, out, "--region", "chr2:1-300", "--dtype", "float64")
    group = read_h5(out)["chr2:1-300"]
    assert group["attrs"]["dtype"] == "float64"
    assert read_h5(out)["/"]["attrs"]["dtype"] == "float64"
    assert group["dtypes"]["gradient"] == np.float32  # stored as float32 whatever the compute dtype
    onehot = encode(SEQUENCES["chr2"][:300])
    expected64, value64 = direct_gradient(onehot, dtype=torch.float64)
    assert float(group["attrs"]["target_value"]) == pytest.approx(value64, rel=1e-12)
    assert_gradient_close(group["gradient"], expected64.astype(np.float32), rtol=1e-6)


# --------------------------------------------------------------------------- methods


def expected_scores(gradient: np.ndarray, onehot: np.ndarray, method: str) -> dict[str, np.ndarray]:
    """The README's method table, written out row by row."""
    length = len(gradient)
    score = np.full(length, np.nan, dtype=np.float64)
    extras: dict[str, np.ndarray] = {}
    if method == "hypothetical":
        extras["hypothetical"] = gradient - gradient.mean(axis=1, keepdims=True)
    if method == "taylor-ism":
        extras["taylor_ism"] = np.full((length, 3), np.nan)
        extras["taylor_ism_alt"] = np.full((length, 3), b"N", dtype="S1")
    for i in range(length):
        if onehot[i].sum() == 0:
            continue
        ref = int(np.argmax(onehot[i]))
        g = gradient[i].astype(np.float64)
        if method == "gradient":
            score[i] = np.sqrt(np.sum(g**2))
        elif method == "input-x-gradient":
            score[i] = g[ref]
        elif method == "hypothetical":
            score[i] = g[ref] - g.mean()
        else:
            alts = [b for b in range(4) if b != ref]
            effects = [g[a] - g[ref] for a in alts]
            extras["taylor_ism"][i] = effects
            extras["taylor_ism_alt"][i] = [BASES[a].encode() for a in alts]
            score[i] = np.mean(np.abs(effects))
    return {"score": score, **extras}


@pytest.mark.parametrize("method", METHODS)
def test_method_scores_from_stored_gradient(genome, tmp_path, method):
    out = tmp_path / f"{method}.h5"
    attribute(genome, out, "--region", "chr1:251-550", "--method", method)
    group = read_h5(out)["chr1:251-550"]
    assert group["attrs"]["method"] == method
    onehot = group["onehot"]
    np.testing.assert_array_equal(onehot, encode(SEQUENCES["chr1"][250:550]))
    # the gradient does not depend on the method
    assert_gradient_close(group["gradient"], direct_gradient(onehot)[0])

    expected = expected_scores(group["gradient"], onehot, method)
    masked = np.isnan(group["score"])
    assert np.flatnonzero(masked).tolist() == list(range(N_RUN[0] - 250, N_RUN[1] - 250))
    np.testing.assert_allclose(group["score"], expected["score"], rtol=1e-5, atol=1e-7, equal_nan=True)
    extra_names = {"gradient": set(), "input-x-gradient": set(), "hypothetical": {"hypothetical"},
                   "taylor-ism": {"taylor_ism", "taylor_ism_alt"}}[method]
    assert set(group) - {"attrs", "dtypes", "gradient", "score", "onehot"} == extra_names
    if method == "hypothetical":
        assert group["hypothetical"].shape == (300, 4)
        np.testing.assert_allclose(group["hypothetical"], expected["hypothetical"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(group["hypothetical"].sum(axis=1), 0, atol=1e-5 * np.abs(group["gradient"]).max())
    if method == "taylor-ism":
        assert group["taylor_ism"].shape == (300, 3)
        np.testing.assert_allclose(group["taylor_ism"], expected["taylor_ism"], rtol=1e-5, atol=1e-7, equal_nan=True)
        np.testing.assert_array_equal(group["taylor_ism_alt"], expected["taylor_ism_alt"])


# --------------------------------------------------------------------------- formats


def parse_bedgraph(path: Path) -> tuple[str, list[tuple[str, int, int, str]]]:
    lines = path.read_text().splitlines()
    rows = []
    assert all(line.startswith("# ") for line in lines[1:] if line.startswith("#"))  # provenance comments
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        chrom, start, end, value = line.split("\t")
        rows.append((chrom, int(start), int(end), value))
    return lines[0], rows


def bedgraph_per_base(rows, chrom_sizes: dict[str, int]) -> dict[str, np.ndarray]:
    tracks = {chrom: np.full(size, np.nan, dtype=np.float32) for chrom, size in chrom_sizes.items()}
    for chrom, start, end, value in rows:
        assert np.isnan(tracks[chrom][start:end]).all(), "bedGraph intervals overlap"
        tracks[chrom][start:end] = np.float32(float(value))
    return tracks


FORMAT_REGIONS = ["chr2:101-300", "chr1:251-550", "chr1:1001-1100"]


@pytest.mark.slow
def test_same_numbers_in_all_three_formats(genome, tmp_path):
    paths = {fmt: tmp_path / f"run.{fmt}" for fmt in ("h5", "bedgraph", "bw")}
    region_args = [arg for region in FORMAT_REGIONS for arg in ("--region", region)]
    for path in paths.values():
        attribute(genome, path, *region_args, "--method", "gradient")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.bedgraph", "run.bw", "run.h5"]
    data = read_h5(paths["h5"])
    scores = {}
    for name in FORMAT_REGIONS:
        chrom, start, end = data[name]["attrs"]["chrom"], int(data[name]["attrs"]["start"]), int(data[name]["attrs"]["end"])
        scores[(chrom, start, end)] = data[name]["score"]
    assert np.isnan(scores[("chr1", 250, 550)]).sum() == N_RUN[1] - N_RUN[0]

    header, rows = parse_bedgraph(paths["bedgraph"])
    assert header.startswith("track type=bedGraph")
    assert "gradient" in header and "random-test" in header
    # sorted by FASTA order, then start; nothing outside the regions, nothing on N bases
    order = list(CHROM_SIZES)
    assert rows == sorted(rows, key=lambda r: (order.index(r[0]), r[1]))
    assert {r[0] for r in rows} == {"chr1", "chr2"}
    assert all(re.fullmatch(r"-?[0-9.e+-]+", r[3]) for r in rows)
    per_base = bedgraph_per_base(rows, CHROM_SIZES)
    covered = {chrom: ~np.isnan(track) for chrom, track in per_base.items()}
    expected_coverage = {chrom: np.zeros(size, dtype=bool) for chrom, size in CHROM_SIZES.items()}
    for (chrom, start, end), score in scores.items():
        expected_coverage[chrom][start:end] = ~np.isnan(score)
        np.testing.assert_array_equal(per_base[chrom][start:end], score)  # exact float32, NaN where masked
    for chrom in CHROM_SIZES:
        np.testing.assert_array_equal(covered[chrom], expected_coverage[chrom])
    assert not covered["chr1"][N_RUN[0] : N_RUN[1]].any()

    bw = pyBigWig.open(str(paths["bw"]))
    try:
        assert bw.isBigWig()
        assert bw.chroms() == CHROM_SIZES
        for (chrom, start, end), score in scores.items():
            values = np.array(bw.values(chrom, start, end), dtype=np.float32)
            np.testing.assert_array_equal(values, score)
        assert bw.intervals("chr1", N_RUN[0], N_RUN[1]) in (None, ())
        assert bw.intervals("chr1", 0, 250) in (None, ())
        n_intervals = sum(len(bw.intervals(chrom) or ()) for chrom in CHROM_SIZES)
        assert n_intervals == len(rows)
    finally:
        bw.close()


def detect_format(path: Path) -> str:
    if h5py.is_hdf5(path):
        return "h5"
    if path.read_bytes()[:20].startswith(b"track type=bedGraph"):
        return "bedgraph"
    bw = pyBigWig.open(str(path))
    try:
        if bw is not None and bw.isBigWig():
            return "bigwig"
    finally:
        if bw is not None:
            bw.close()
    return "unknown"


@pytest.mark.parametrize(
    "name, fmt, expected",
    [
        ("out.h5", None, "h5"),
        ("out.hdf5", None, "h5"),
        ("out.bedgraph", None, "bedgraph"),
        ("out.bg", None, "bedgraph"),
        ("out.bw", None, "bigwig"),
        ("out.bigwig", None, "bigwig"),
        ("OUT.BW", None, "bigwig"),
        ("out.txt", "bedgraph", "bedgraph"),
        ("out.dat", "h5", "h5"),
        ("out", "bigwig", "bigwig"),
        ("out.h5", "bedgraph", "bedgraph"),
    ],
)
def test_output_format_from_suffix_or_option(genome, tmp_path, name, fmt, expected):
    out = tmp_path / name
    attribute(genome, out, "--region", "chr2:1-50", *(["--format", fmt] if fmt else []))
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert detect_format(out) == expected


def test_force_replaces_an_existing_output(genome, tmp_path):
    out = tmp_path / "again.h5"
    out.write_bytes(b"an older result\n")
    attribute(genome, out, "--region", "chr2:1-50", "--force")
    assert h5py.is_hdf5(out)
    assert sorted(read_h5(out)) == ["/", "chr2:1-50"]
    assert [p.name for p in tmp_path.iterdir()] == ["again.h5"]


def test_quiet_prints_no_summary_but_keeps_the_warning(genome, tmp_path):
    out = tmp_path / "quiet.h5"
    result = attribute(genome, out, "--region", "chr2:1-50", "--quiet")
    assert "WARNING: model 'random-test'" in result.stderr
    assert "chr2:1-50" not in result.stderr
    assert "wrote" not in result.stderr
    assert out.exists()


# --------------------------------------------------------------------------- version, help, real entry point


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"pgf {pgf.__version__}"


def test_attribute_help_mentions_every_method():
    result = CliRunner().invoke(app, ["attribute", "--help"], env={"COLUMNS": "100", "TERMINAL_WIDTH": "100"})
    assert result.exit_code == 0
    for method in METHODS:
        assert f"'{method}'" in result.output, method
    for option in ("--region", "--regions", "--model", "--target", "--method", "--format", "--force"):
        assert option in result.output


def readme_sample_arguments() -> list[str]:
    """The arguments of the README's sample job (`pgf attribute sample_data/...`)."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"\bpgf (attribute sample_data/[^\n&|;]+)", readme)
    assert match, "the README no longer shows the sample job"
    return shlex.split(match.group(1))


@pytest.mark.slow
def test_readme_sample_job_through_the_console_script(tmp_path):
    """The README's job runs the built-in model on a showcase region, and its attributions find the planted truth."""
    from pgf.sim.truth import read_truth_elements, read_truth_motifs

    args = readme_sample_arguments()
    assert args[:2] == ["attribute", "sample_data/genome.fa"]
    assert "--model" not in args  # the default: the built-in trained model
    shutil.copytree(REPO / "sample_data", tmp_path / "sample_data")
    script = Path(sys.executable).parent / "pgf"
    assert script.exists(), "the pgf console script is not installed beside the Python interpreter"
    proc = subprocess.run([str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "WARNING" not in proc.stderr
    assert "model 'builtin': trained on simulated DNA" in proc.stderr

    data = read_h5(tmp_path / "sample_out.h5")
    (group_name,) = [name for name in data if name != "/"]
    group = data[group_name]
    attrs = group["attrs"]
    assert attrs["model_id"] == "builtin" and bool(attrs["model_trained"])
    assert attrs["model_checksum"] == load_model("builtin").info.checksum
    chrom, start, end = attrs["chrom"], int(attrs["start"]), int(attrs["end"])
    fasta = pyfaidx.Fasta(str(tmp_path / "sample_data" / "genome.fa"), as_raw=True)
    try:
        np.testing.assert_array_equal(group["onehot"], encode(fasta[chrom][start:end]))
    finally:
        fasta.close()
    assert np.isfinite(group["score"]).all()

    # the target window sits on a promoter whose distal enhancer is in the region
    window = re.search(r"(\d[\d,]*)-(\d[\d,]*)", args[args.index("--target-window") + 1])
    w_start, w_end = int(window.group(1).replace(",", "")) - 1, int(window.group(2).replace(",", ""))
    elements = read_truth_elements(REPO / "sample_data" / "truth_elements.bed")
    (promoter,) = [e for e in elements if e.role == "promoter" and e.chrom == chrom and w_start <= (e.start + e.end) // 2 < w_end]
    enhancer = next(e for e in elements if e.name == promoter.distal_partner)
    assert start <= enhancer.start and enhancer.end <= end
    assert abs((enhancer.start + enhancer.end) // 2 - (promoter.start + promoter.end) // 2) >= 20_000

    # ranks of |input x gradient| over the region: the promoter's planted motifs hold the
    # top-attributed base, the promoter at least half of the top 20, and its motif bases average over
    # 100x the attribution of background bases; the distal enhancer's planted motifs come
    # next: a base in the top 100 and their bases averaging over 30x the background.
    scores = np.abs(group["score"])
    rank = np.empty(scores.size, dtype=np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(1, scores.size + 1)
    motifs = read_truth_motifs(REPO / "sample_data" / "truth_motifs.bed")
    in_promoter_motif = np.zeros(scores.size, dtype=bool)
    for m in (m for m in motifs if m.element == promoter.name):
        in_promoter_motif[m.start - start : m.end - start] = True
    assert rank[in_promoter_motif].min() == 1
    top = np.argsort(-scores, kind="stable")[:20]
    in_promoter = np.zeros(scores.size, dtype=bool)
    in_promoter[promoter.start - start : promoter.end - start] = True
    assert in_promoter[top].sum() >= 10, in_promoter[top].sum()  # motif bases and their flanks
    near_any = np.zeros(scores.size, dtype=bool)
    for e in (e for e in elements if e.chrom == chrom and e.end > start and e.start < end):
        near_any[max(0, e.start - 200 - start) : max(0, e.end + 200 - start)] = True
    assert scores[in_promoter_motif].mean() > 100 * scores[~near_any].mean()
    in_enhancer_motif = np.zeros(scores.size, dtype=bool)
    for m in (m for m in motifs if m.element == enhancer.name):
        in_enhancer_motif[m.start - start : m.end - start] = True
    assert rank[in_enhancer_motif].min() <= 100, rank[in_enhancer_motif].min()
    assert scores[in_enhancer_motif].mean() > 30 * scores[~near_any].mean()
