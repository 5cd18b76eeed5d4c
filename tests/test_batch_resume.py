"""Genome-scale batch jobs (issue #22): partial outputs, --resume, provenance, --log-json, --shard and pgf merge.

Everything here runs in-process with `--model random-test` and short regions;
the subprocess tests (SIGKILL, SIGTERM, several workers, Snakemake, memory)
are in test_batch_processes.py and test_snakemake.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pyBigWig
import pytest
from typer.testing import CliRunner

from helpers import random_sequence, write_fasta
from pgf.cli.app import app
from pgf.engine import TiledEngine
from pgf.io.regions import Region
from pgf.io.tracks import stream_value_runs, value_runs
from pgf.workflows.shards import shard_assignment, shard_regions

SIZES = {"chr1": 1500, "chr2": 900}
# distinct lengths: every region is its own batch in any run (single, shard, resumed), so results are bit-identical
REGIONS = ["chr1:1-120", "chr1:201-330", "chr1:401-540", "chr2:1-150", "chr2:301-460", "chr1:1001-1170"]
REGION_ARGS = [arg for region in REGIONS for arg in ("--region", region)]


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> Path:
    return write_fasta(tmp_path_factory.mktemp("genome") / "g.fa", {c: random_sequence(n, i + 7) for i, (c, n) in enumerate(SIZES.items())})


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def attribute(genome: Path, output: Path, *args: object):
    return invoke("attribute", genome, "--model", "random-test", "--device", "cpu", "-o", output, *args)


def contents(path: Path) -> dict[str, dict]:
    """Every region group: its datasets and attributes (what must not change between equivalent runs)."""
    out = {}
    with h5py.File(path, "r") as handle:
        for name, group in handle.items():
            out[name] = {key: group[key][()] for key in group}
            out[name]["attrs"] = {key: value for key, value in group.attrs.items()}
    return out


def assert_same_groups(a: Path, b: Path) -> None:
    left, right = contents(a), contents(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert sorted(left[name]) == sorted(right[name]), name
        for key, value in left[name].items():
            if key == "attrs":
                assert sorted(value) == sorted(right[name]["attrs"])
                for attr, x in value.items():
                    np.testing.assert_array_equal(x, right[name]["attrs"][attr], err_msg=f"{name} @{attr}")
            else:
                np.testing.assert_array_equal(value, right[name][key], err_msg=f"{name}/{key}")


def stop_on_call(monkeypatch, number: int, exception: BaseException) -> None:
    original = TiledEngine.gradient
    calls = {"n": 0}

    def gradient(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == number:
            raise exception
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TiledEngine, "gradient", gradient)


@pytest.fixture(scope="module")
def single(genome, tmp_path_factory) -> Path:
    """One uninterrupted run over all regions: the reference every other way of running must equal."""
    out = tmp_path_factory.mktemp("single") / "all.h5"
    result = attribute(genome, out, *REGION_ARGS)
    assert result.exit_code == 0, result.output
    return out


# --------------------------------------------------------------------------- partial output and --resume


def test_success_leaves_only_the_output_with_provenance(single):
    assert sorted(p.name for p in single.parent.iterdir()) == ["all.h5"]  # partial folder removed
    with h5py.File(single, "r") as handle:
        root = dict(handle.attrs)
    assert root["command_line"].startswith("pgf attribute ") and "--region chr1:201-330" in root["command_line"]
    for key in ("torch_version", "python_version", "device", "started", "finished", "fasta_index_sha256", "regions_sha256"):
        assert root[key], key
    assert root["device"] == "cpu"
    assert list(root["chrom_names"]) == list(SIZES) and list(root["chrom_lengths"]) == list(SIZES.values())
    assert root["method"] == "input-x-gradient" and root["model_id"] == "random-test"


def test_interrupted_run_resumes_to_the_same_output(genome, single, tmp_path, monkeypatch):
    out = tmp_path / "r.h5"
    stop_on_call(monkeypatch, 4, KeyboardInterrupt())
    stopped = attribute(genome, out, *REGION_ARGS)
    assert stopped.exit_code == 130, stopped.output
    assert "Traceback" not in stopped.output
    assert f"3 of 6 regions are saved in {tmp_path / 'r.h5.partial'}" in stopped.stderr
    assert stopped.stderr.strip().endswith("--resume")
    assert not out.exists() and (tmp_path / "r.h5.partial").is_dir()
    assert len(list((tmp_path / "r.h5.partial").glob("batch-*.h5"))) == 3
    monkeypatch.undo()
    resumed = attribute(genome, out, *REGION_ARGS, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "3 of 6 regions already done (skipped), 3 to compute" in resumed.stderr
    assert f"wrote {out} (6 regions, 870 bp; 3 from the partial output)" in resumed.stderr
    assert resumed.stderr.count(" bp  ") == 3  # three summary lines: only the missing regions were computed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]
    assert_same_groups(out, single)


def test_existing_partial_needs_resume_or_force(genome, tmp_path, monkeypatch):
    out = tmp_path / "p.bw"
    stop_on_call(monkeypatch, 2, KeyboardInterrupt())
    assert attribute(genome, out, *REGION_ARGS).exit_code == 130
    monkeypatch.undo()
    again = attribute(genome, out, *REGION_ARGS)
    assert again.exit_code == 2
    message = again.stderr.strip().splitlines()[-1]
    assert message.startswith("error: a partial output of an earlier run exists: ")
    assert "--resume" in message and "--force" in message
    forced = attribute(genome, out, *REGION_ARGS, "--force")
    assert forced.exit_code == 0, forced.output
    assert "already done" not in forced.stderr and forced.stderr.count(" bp  ") == 6  # started again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.bw"]


@pytest.mark.parametrize(
    "change, named",
    [(["--method", "gradient"], "method input-x-gradient there, gradient now"),
     (["--region", "chr2:601-700"], "regions 6 there, 7 now"),
     (["--dtype", "float64"], "dtype float32 there, float64 now")],
)
def test_resume_refuses_a_different_run(genome, tmp_path, monkeypatch, change, named):
    out = tmp_path / "m.h5"
    stop_on_call(monkeypatch, 2, KeyboardInterrupt())
    assert attribute(genome, out, *REGION_ARGS).exit_code == 130
    monkeypatch.undo()
    result = attribute(genome, out, *REGION_ARGS, *change, "--resume")
    assert result.exit_code == 2, result.output
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {tmp_path / 'm.h5.partial'} was written by a different run (")
    assert named in message and "--force" in message
    assert len(list((tmp_path / "m.h5.partial").glob("batch-*.h5"))) == 1  # untouched


def test_resume_without_a_partial_output_just_runs(genome, tmp_path):
    result = attribute(genome, tmp_path / "n.h5", "--region", "chr1:1-50", "--resume")
    assert result.exit_code == 0, result.output
    assert "nothing to resume" in result.stderr


def test_bedgraph_records_provenance_in_comments(genome, tmp_path):
    out = tmp_path / "t.bedgraph"
    assert attribute(genome, out, "--region", "chr1:1-50").exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    comments = [line for line in lines if line.startswith("#")]
    assert any(line.startswith("# command_line: pgf attribute ") for line in comments)
    assert any(line.startswith("# torch_version: ") for line in comments)
    assert any(line.startswith("# device: cpu") for line in comments)
    assert all(len(line.split("\t")) == 4 for line in lines[1:] if not line.startswith("#"))


def test_log_json_has_one_line_per_region(genome, tmp_path):
    log = tmp_path / "log.jsonl"
    assert attribute(genome, tmp_path / "j.h5", "--region", "chr1:1-50", "--region", "chr2:1-80", "--log-json", log).exit_code == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["region"] for r in records] == ["chr1:1-50", "chr2:1-80"]
    for record in records:
        assert record["seconds"] > 0 and record["bp_per_s"] > 0 and record["peak_memory_bytes"] > 0
        assert record["device"] == "cpu" and record["bp"] in (50, 80)


def test_overall_progress_text():
    from pgf.cli.progress import RichReporter
    from pgf.workflows.common import RegionSummary

    reporter = RichReporter(quiet=True)
    reporter.job_started(total_bp=1000, done_bp=200, regions=4, skipped=1)
    assert reporter.overall_rate() == ""
    reporter.region_finished(RegionSummary(Region("chr1", 0, 300), 0.1, 0, "peak RSS", 1.0, 0))
    text = reporter.overall_rate()
    assert text.startswith("500 of 1,000 bp, ") and " bp/s, ETA " in text


def test_summary_lines_show_the_whole_job(genome, tmp_path):
    result = attribute(genome, tmp_path / "o.h5", "--region", "chr1:1-50", "--region", "chr2:1-80")
    lines = [line for line in result.stderr.splitlines() if line.startswith("chr")]
    assert re.search(r"  \[1/2 regions, 50 of 130 bp, [\d,]+ bp/s, ETA \d\d:\d\d:\d\d\]$", lines[0]), lines[0]
    assert re.search(r"  \[2/2 regions, 130 of 130 bp, [\d,]+ bp/s, ETA 00:00:00\]$", lines[1]), lines[1]


# --------------------------------------------------------------------------- shards and merge


def test_shard_assignment_is_balanced_deterministic_and_complete():
    regions = [Region("chr1", 0, n) for n in (500, 100, 400, 300, 200, 250, 50)]
    batches = [[r] for r in regions]
    assignment = shard_assignment(batches, 3)
    assert assignment == shard_assignment([list(b) for b in batches], 3)
    totals = [sum(len(r) for r, s in zip(regions, assignment) if s == k) for k in range(3)]
    assert max(totals) - min(totals) <= max(len(r) for r in regions)
    assert sorted(totals) == [600, 600, 600]  # greedy, largest first: 500+100, 400+200, 300+250+50
    parts = [shard_regions(batches, k, 3) for k in (1, 2, 3)]
    assert sorted((r for part in parts for r in part), key=regions.index) == regions
    for part in parts:  # each shard keeps the list's order
        assert part == sorted(part, key=regions.index)


def test_shards_compute_the_batches_of_the_whole_list(genome, tmp_path):
    """Equal-length regions batched together in one run stay together in a shard (bit-identical merge)."""
    same = [arg for region in ("chr1:1-100", "chr1:201-300", "chr1:401-500", "chr2:1-100", "chr2:201-330") for arg in ("--region", region)]
    single = tmp_path / "single.h5"
    assert attribute(genome, single, *same, "--batch-size", 2).exit_code == 0
    parts = []
    for k in (1, 2):
        parts.append(tmp_path / f"s{k}.h5")
        result = attribute(genome, parts[-1], *same, "--batch-size", 2, "--shard", f"{k}/2")
        assert result.exit_code == 0, result.output
    assert [len(contents(p)) for p in parts] == [3, 2]  # batches {1,2} + {5} | {3,4} (200 + 130 bp | 200 bp)
    assert invoke("merge", *parts, "-o", tmp_path / "merged.h5").exit_code == 0
    assert_same_groups(tmp_path / "merged.h5", single)


@pytest.mark.parametrize(
    "shard, fragment",
    [("3/2", "K must be between 1 and N (2)"), ("0/4", "K must be between 1 and N"), ("x", "expected K/N"),
     ("1/0", "N must be at least 1"), ("1-2", "expected K/N")],
)
def test_bad_shard_is_a_one_line_error(genome, tmp_path, shard, fragment):
    result = attribute(genome, tmp_path / "s.h5", *REGION_ARGS, "--shard", shard)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --shard") and fragment in lines[-1]
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def shard_parts(genome, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shards")
    parts = []
    for k in (1, 2, 3):
        part = folder / f"part{k}.h5"
        result = attribute(genome, part, *REGION_ARGS, "--shard", f"{k}/3")
        assert result.exit_code == 0, result.output
        parts.append(part)
    return parts


def test_three_shards_merged_equal_one_run(genome, single, shard_parts, tmp_path):
    counts = [len(contents(part)) for part in shard_parts]
    assert sum(counts) == len(REGIONS) and all(counts)
    merged = tmp_path / "merged.h5"
    result = invoke("merge", *shard_parts, "-o", merged)
    assert result.exit_code == 0, result.output
    assert f"wrote {merged} (6 regions" in result.stderr
    assert_same_groups(merged, single)
    with h5py.File(merged, "r") as handle:
        assert [str(p) for p in handle.attrs["merged_from"]] == [str(p) for p in shard_parts]
        assert handle.attrs["model_checksum"] == h5py.File(single, "r").attrs["model_checksum"]

    # the bigWig of the merge equals the bigWig of one run
    bw_single, bw_merged = tmp_path / "single.bw", tmp_path / "merged.bw"
    assert attribute(genome, bw_single, *REGION_ARGS).exit_code == 0
    assert invoke("merge", *shard_parts, "-o", bw_merged).exit_code == 0
    a, b = pyBigWig.open(str(bw_single)), pyBigWig.open(str(bw_merged))
    try:
        assert a.chroms() == b.chroms() == SIZES
        for chrom in SIZES:
            assert a.intervals(chrom) == b.intervals(chrom)
    finally:
        a.close()
        b.close()


def test_merge_refuses_incompatible_or_colliding_parts(genome, shard_parts, tmp_path):
    other = tmp_path / "other.h5"
    assert attribute(genome, other, "--region", "chr2:701-800", "--method", "gradient").exit_code == 0
    result = invoke("merge", shard_parts[0], other, "-o", tmp_path / "x.h5")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: parts disagree on method: {shard_parts[0]} has 'input-x-gradient', {other} has 'gradient'")

    again = tmp_path / "again.h5"
    assert attribute(genome, again, "--region", REGIONS[0]).exit_code == 0
    first_region = next(p for p in shard_parts if REGIONS[0] in contents(p))
    collision = invoke("merge", first_region, again, "-o", tmp_path / "y.h5")
    assert collision.exit_code == 2
    assert f"error: region {REGIONS[0]} is in both {first_region} and {again}" in collision.stderr

    twice = invoke("merge", shard_parts[0], shard_parts[0], "-o", tmp_path / "z.h5")
    assert twice.exit_code == 2 and "is given twice" in twice.stderr

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    not_h5 = invoke("merge", shard_parts[0], text, "-o", tmp_path / "w.h5")
    assert not_h5.exit_code == 2 and "is not HDF5" in not_h5.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.h5", "notes.txt", "other.h5"]


# --------------------------------------------------------------------------- streaming helpers


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1000])
def test_stream_value_runs_equal_whole_array_runs(chunk):
    rng = np.random.default_rng(chunk)
    values = rng.integers(0, 3, 500).astype(np.float32)
    values[rng.random(500) < 0.1] = np.nan
    values[100:160] = 2.0  # a long run crossing many chunk boundaries
    starts, ends, vals = value_runs(values)
    pieces = list(stream_value_runs(values[i : i + chunk] for i in range(0, values.size, chunk)))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pieces]), starts)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pieces]), ends)
    np.testing.assert_array_equal(np.concatenate([p[2] for p in pieces]), vals)


def test_resume_with_other_batches_never_replaces_earlier_batch_files(genome, tmp_path, monkeypatch):
    """Equal-length regions: one per batch first, then two per batch; the second run's batch 1 must not
    replace the first run's batch 1 file (each run names its files with its own token)."""
    same = [arg for region in ("chr1:1-100", "chr1:201-300", "chr1:401-500", "chr2:1-100") for arg in ("--region", region)]
    out, reference = tmp_path / "b.h5", tmp_path / "ref.h5"
    assert attribute(genome, reference, *same, "--batch-size", 1).exit_code == 0
    stop_on_call(monkeypatch, 3, KeyboardInterrupt())
    assert attribute(genome, out, *same, "--batch-size", 1).exit_code == 130
    monkeypatch.undo()
    resumed = attribute(genome, out, *same, "--batch-size", 2, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "2 of 4 regions already done (skipped)" in resumed.stderr
    done, expected = contents(out), contents(reference)
    assert sorted(done) == sorted(expected)
    for name in ("chr1:1-100", "chr1:201-300"):  # computed before the interruption, one per batch
        np.testing.assert_array_equal(done[name]["gradient"], expected[name]["gradient"])


def test_more_shards_than_regions_give_empty_parts_that_merge(genome, tmp_path):
    two = ["--region", "chr1:1-100", "--region", "chr2:1-120"]
    parts = []
    for k in (1, 2, 3):
        parts.append(tmp_path / f"p{k}.h5")
        result = attribute(genome, parts[-1], *two, "--shard", f"{k}/3")
        assert result.exit_code == 0, result.output
    assert "WARNING: shard 3/3 holds no region (2 regions in 3 shards); writing an empty output" in result.stderr
    assert [len(contents(p)) for p in parts] == [1, 1, 0]
    merged = tmp_path / "m.bw"
    assert invoke("merge", *parts, "-o", merged).exit_code == 0
    bw = pyBigWig.open(str(merged))
    try:
        assert len(bw.intervals("chr1")) > 0 and len(bw.intervals("chr2")) > 0
    finally:
        bw.close()


def test_a_stop_while_a_batch_is_written_leaves_no_temporary(genome, tmp_path, monkeypatch):
    """SIGTERM or Ctrl-C landing between a batch's temporary file and its rename: the temporary goes."""
    import os

    real_replace = os.replace

    def replace(source, target):
        if str(source).endswith(".tmp") and Path(target).name.startswith("batch-000002"):
            raise KeyboardInterrupt
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "r.h5"
    stopped = attribute(genome, out, *REGION_ARGS)
    assert stopped.exit_code == 130, stopped.output
    partial = tmp_path / "r.h5.partial"
    assert len(list(partial.glob("batch-*.h5"))) == 2
    assert not [p.name for p in partial.iterdir() if p.name.endswith(".tmp")]
