"""Track writers (HDF5, bedGraph, bigWig), value runs, format choice and atomic output."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pyBigWig
import pytest

from pgf.errors import OutputError, PgfUserError
from pgf.io.atomic import AtomicOutput, check_output_path
from pgf.io.onehot import one_hot
from pgf.io.regions import Region
from pgf.io.tracks import AttributionTrack, RunMetadata, value_runs
from pgf.io.writers import (
    BedGraphWriter,
    BigWigWriter,
    HDF5Writer,
    TrackLabel,
    check_regions_fit_format,
    hdf5_group_name,
    open_writer,
    resolve_format,
)

# FASTA order on purpose not alphabetical: outputs follow the FASTA index.
SIZES = {"chr2": 4000, "chr10": 3000, "chr1": 5000, "chrM": 100}
META = RunMetadata(
    method="input-x-gradient",
    target="sum:0",
    model_id="random-test",
    model_checksum="0f" * 32,
    model_trained=False,
    engine="autograd",
    dtype="float32",
    tool_version="0.1.0",
)
SUFFIX = {"h5": ".h5", "bedgraph": ".bedgraph", "bigwig": ".bw"}


def make_track(region: Region, seed: int, with_extras: bool = False) -> AttributionTrack:
    """Random float32 numbers; N positions masked (NaN); runs of equal values."""
    rng = np.random.default_rng(seed)
    length = len(region)
    bases = rng.choice(list("ACGTacgt"), size=length)
    bases[10:17] = "N"  # a masked run
    bases[40] = "R"  # a single masked IUPAC code
    onehot = one_hot("".join(bases))
    gradient = rng.normal(scale=1e-3, size=(length, 4)).astype(np.float32)
    score = rng.normal(size=length).astype(np.float32) * np.float32(1e-2)
    score[20:30] = np.float32(0.125)  # a run of ten equal values
    score[35:40] = np.float32(-3.3)  # equal values on both sides of a masked base
    score[41:44] = np.float32(-3.3)
    score[~onehot.any(axis=1)] = np.nan
    extras, extra_attributes = {}, {}
    if with_extras:
        extras = {
            "hypothetical": rng.normal(size=(length, 4)).astype(np.float32),
            "taylor_ism_alt": np.tile(np.array([b"C", b"G", b"T"], dtype="S1"), (length, 1)),
        }
        extra_attributes = {"hypothetical": {"columns": "A,C,G,T"}}
    return AttributionTrack(region, onehot, gradient, score, float(rng.normal()), extras, extra_attributes)


A = make_track(Region("chr1", 1000, 3000, "peakA"), 1, with_extras=True)
B = make_track(Region("chr2", 100, 600), 2)
C = make_track(Region("chr10", 0, 250, "c"), 3)
D = make_track(Region("chr1", 0, 500), 4)
E = make_track(Region("chr1", 500, 560), 5)  # touches D: not an overlap
ADDED = [A, B, D, C, E]  # out of order on purpose
IN_ORDER = [B, C, D, E, A]  # FASTA order (chr2, chr10, chr1), then start


def expected_runs(track: AttributionTrack) -> list[tuple[str, int, int, np.float32]]:
    """Reference implementation of the merged intervals, position by position."""
    runs: list[list] = []
    for offset, value in enumerate(track.score):
        position = track.region.start + offset
        if np.isnan(value):
            continue
        if runs and runs[-1][2] == position and runs[-1][3] == value:
            runs[-1][2] = position + 1
        else:
            runs.append([track.region.chrom, position, position + 1, value])
    return [tuple(run) for run in runs]


def write(path: Path, fmt: str, tracks: list[AttributionTrack], force: bool = False) -> Path:
    with open_writer(path, fmt, META, SIZES, force=force) as writer:
        for track in tracks:
            writer.add(track)
    return path


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def read_bedgraph(path: Path) -> tuple[str, list[tuple[str, int, int, np.float32]]]:
    lines = path.read_text().splitlines()
    rows = []
    for line in lines[1:]:
        chrom, start, end, value = line.split("\t")
        rows.append((chrom, int(start), int(end), np.float32(value)))
    return lines[0], rows


# --- value_runs -----------------------------------------------------------------


def test_value_runs():
    nan = np.nan
    starts, ends, values = value_runs(np.array([1, 1, 2, nan, nan, 2, 2, 3, nan], dtype=np.float32))
    assert starts.tolist() == [0, 2, 5, 7]
    assert ends.tolist() == [2, 3, 7, 8]
    assert values.tolist() == [1.0, 2.0, 2.0, 3.0]
    assert starts.dtype == ends.dtype == np.int64
    assert values.dtype == np.float32


def test_value_runs_edge_cases():
    for empty in (np.zeros(0, dtype=np.float32), np.full(5, np.nan, dtype=np.float32)):
        starts, ends, values = value_runs(empty)
        assert starts.tolist() == ends.tolist() == values.tolist() == []
        assert values.dtype == np.float32
    starts, ends, values = value_runs(np.array([np.nan, 0.5, 0.5, 0.5], dtype=np.float32))
    assert (starts.tolist(), ends.tolist(), values.tolist()) == ([1], [4], [0.5])
    starts, ends, values = value_runs(np.array([7.0], dtype=np.float32))
    assert (starts.tolist(), ends.tolist(), values.tolist()) == ([0], [1], [7.0])
    # float64 input is compared as float32, the precision of every output
    starts, ends, values = value_runs(np.array([0.1, 0.1 + 1e-12, 0.2]))
    assert (starts.tolist(), ends.tolist()) == ([0, 2], [2, 3])
    assert values.tolist() == [np.float32(0.1), np.float32(0.2)]


def test_value_runs_of_a_random_track_match_reference():
    starts, ends, values = value_runs(A.score)
    reference = expected_runs(A)
    assert [(A.region.chrom, A.region.start + s, A.region.start + e, v) for s, e, v in zip(starts, ends, values)] == (
        reference
    )
    assert (A.region.start + 20, A.region.start + 30, np.float32(0.125)) in [r[1:] for r in reference]
    # equal values on both sides of the masked base stay separate intervals
    assert (A.region.start + 35, A.region.start + 40, np.float32(-3.3)) in [r[1:] for r in reference]
    assert (A.region.start + 41, A.region.start + 44, np.float32(-3.3)) in [r[1:] for r in reference]


# --- resolve_format -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt",
    [("out.h5", "h5"), ("out.hdf5", "h5"), ("OUT.H5", "h5"), ("x.HDF5", "h5"),
     ("out.bedgraph", "bedgraph"), ("out.bedGraph", "bedgraph"), ("out.bg", "bedgraph"), ("out.BG", "bedgraph"),
     ("out.bw", "bigwig"), ("out.bigwig", "bigwig"), ("out.BigWig", "bigwig"), ("dir.x/out.bw", "bigwig")],
)
def test_resolve_format_by_suffix(name, fmt):
    assert resolve_format(name) == fmt
    assert resolve_format(Path(name)) == fmt


@pytest.mark.parametrize("fmt, expected", [("h5", "h5"), ("BEDGRAPH", "bedgraph"), ("BigWig", "bigwig")])
def test_resolve_format_override(fmt, expected):
    assert resolve_format("results.txt", fmt) == expected
    assert resolve_format("results.h5", fmt) == expected


def test_resolve_format_errors():
    with pytest.raises(OutputError) as info:
        resolve_format("out.txt")
    assert "cannot tell the output format from 'out.txt'" in str(info.value)
    assert "--format h5|bedgraph|bigwig" in str(info.value)
    with pytest.raises(OutputError, match="cannot tell the output format"):
        resolve_format("out")
    with pytest.raises(OutputError, match="cannot tell the output format"):
        resolve_format("out.bedgraph.gz")
    with pytest.raises(OutputError) as info:
        resolve_format("out.h5", "wig")
    assert str(info.value) == "unknown format 'wig'; choose one of: h5, bedgraph, bigwig"
    assert issubclass(OutputError, PgfUserError)


def test_open_writer_classes(tmp_path):
    for fmt, cls in (("h5", HDF5Writer), ("bedgraph", BedGraphWriter), ("bigwig", BigWigWriter)):
        writer = open_writer(tmp_path / f"x{SUFFIX[fmt]}", fmt, META, SIZES)
        assert type(writer) is cls
        writer.abort()
    assert folder_listing(tmp_path) == []


# --- HDF5 -------------------------------------------------------------------------


def test_hdf5_layout(tmp_path):
    path = write(tmp_path / "out.h5", "h5", ADDED)
    assert folder_listing(tmp_path) == ["out.h5"]
    with h5py.File(path, "r") as handle:
        assert dict(handle.attrs) == META.attributes()
        assert sorted(handle.attrs) == sorted(
            ["method", "target", "model_id", "model_checksum", "model_trained", "engine", "dtype", "tool_version", "model_revision"]
        )
        assert sorted(handle) == sorted(
            ["chr1:1001-3000", "chr2:101-600", "chr10:1-250", "chr1:1-500", "chr1:501-560"]
        )
        for track in ADDED:
            name = track.region.to_string()
            assert hdf5_group_name(track) == name
            group = handle[name]
            length = len(track.region)
            assert group["gradient"].dtype == np.float32 and group["gradient"].shape == (length, 4)
            assert group["score"].dtype == np.float32 and group["score"].shape == (length,)
            assert group["onehot"].dtype == np.uint8 and group["onehot"].shape == (length, 4)
            np.testing.assert_array_equal(group["gradient"][()], track.gradient)
            np.testing.assert_array_equal(group["score"][()], track.score)  # NaN where masked
            np.testing.assert_array_equal(group["onehot"][()], track.onehot)
            assert int(np.isnan(group["score"][()]).sum()) == 8
            attrs = dict(group.attrs)
            assert attrs["chrom"] == track.region.chrom
            assert attrs["start"] == track.region.start
            assert attrs["end"] == track.region.end
            assert attrs["target_value"] == track.target_value
            for key, value in META.attributes().items():
                assert attrs[key] == value
            if track.region.name is None:
                assert "name" not in attrs
            else:
                assert attrs["name"] == track.region.name
        group = handle["chr1:1001-3000"]
        assert group.attrs["name"] == "peakA"
        assert (group.attrs["chrom"], group.attrs["start"], group.attrs["end"]) == ("chr1", 1000, 3000)
        assert bool(group.attrs["model_trained"]) is False
        assert group.attrs["model_checksum"] == "0f" * 32
        assert sorted(group) == ["gradient", "hypothetical", "onehot", "score", "taylor_ism_alt"]
        assert group["hypothetical"].dtype == np.float32 and group["hypothetical"].shape == (2000, 4)
        np.testing.assert_array_equal(group["hypothetical"][()], A.extras["hypothetical"])
        assert group["hypothetical"].attrs["columns"] == "A,C,G,T"
        assert group["taylor_ism_alt"].shape == (2000, 3)
        assert group["taylor_ism_alt"][0].tolist() == [b"C", b"G", b"T"]
        assert sorted(handle["chr2:101-600"]) == ["gradient", "onehot", "score"]


def test_hdf5_group_name_escapes_slash():
    track = make_track(Region("scaffold/1", 0, 50), 9)
    assert hdf5_group_name(track) == "scaffold%2F1:1-50"


def test_hdf5_same_region_twice_is_refused(tmp_path):
    path = tmp_path / "out.h5"
    again = make_track(Region("chr2", 100, 600, "other name"), 8)
    with pytest.raises(OutputError) as info:
        write(path, "h5", [B, again])
    assert str(info.value) == "region chr2:101-600 is given twice"
    assert folder_listing(tmp_path) == []


def test_hdf5_allows_overlapping_regions(tmp_path):
    inner = make_track(Region("chr1", 1500, 1600), 6)
    with h5py.File(write(tmp_path / "out.h5", "h5", [A, inner]), "r") as handle:
        assert sorted(handle) == ["chr1:1001-3000", "chr1:1501-1600"]


def test_check_regions_fit_format():
    """The one region check: HDF5 refuses a region given twice, interval formats any overlap."""
    a, touching = Region("chr1", 0, 100), Region("chr1", 100, 200)
    inner, again = Region("chr1", 50, 60), Region("chr1", 0, 100, "other name")
    for fmt in ("h5", "bedgraph", "bigwig"):
        check_regions_fit_format([a, touching], fmt)
    check_regions_fit_format([a, inner], "h5")
    with pytest.raises(OutputError, match=r"^region chr1:1-100 is given twice$"):
        check_regions_fit_format([a, touching, again], "h5")
    with pytest.raises(OutputError) as info:
        check_regions_fit_format([touching, inner, a], "bedgraph")
    assert str(info.value) == (
        "regions chr1:1-100 and chr1:51-60 overlap; a bedgraph track holds one value per base "
        "(combine them with --overlap mean|max|first, or write .h5)"
    )


# --- bedGraph -----------------------------------------------------------------------


def test_bedgraph_content(tmp_path):
    path = write(tmp_path / "out.bedgraph", "bedgraph", ADDED)
    assert folder_listing(tmp_path) == ["out.bedgraph"]
    header, rows = read_bedgraph(path)
    assert header == (
        'track type=bedGraph name="pgf input-x-gradient" '
        'description="pgf 0.1.0 input-x-gradient of sum:0, model random-test"'
    )
    expected = [run for track in IN_ORDER for run in expected_runs(track)]
    assert rows == expected
    # sorted by FASTA order, then start; 0-based half-open; no NaN; merged runs
    assert [row[0] for row in rows] == sorted((row[0] for row in rows), key=list(SIZES).index)
    assert rows[0][:2] == ("chr2", 100)
    assert all(start < end for _, start, end, _ in rows)
    assert not any(np.isnan(value) for *_, value in rows)
    assert ("chr1", 1020, 1030, np.float32(0.125)) in rows
    assert ("chr2", 110, 117) not in [row[:3] for row in rows]
    covered = sum(end - start for _, start, end, _ in rows)
    assert covered == sum(len(t.region) - 8 for t in ADDED)
    assert len(rows) < covered  # some runs were merged
    # values are exact float32
    for track in IN_ORDER:
        region = track.region
        values = np.full(len(region), np.nan, dtype=np.float32)
        for chrom, start, end, value in rows:
            if chrom == region.chrom and region.start <= start < region.end:
                values[start - region.start : end - region.start] = value
        np.testing.assert_array_equal(values, track.score)


def test_bedgraph_track_label(tmp_path):
    path = tmp_path / "labelled.bedgraph"
    with open_writer(path, "bedgraph", META, SIZES, label=TrackLabel("my name", "my description")) as writer:
        writer.add(B)
    header, rows = read_bedgraph(path)
    assert header == 'track type=bedGraph name="my name" description="my description"'
    assert rows == expected_runs(B)


def test_bedgraph_values_have_nine_significant_digits(tmp_path):
    region = Region("chrM", 0, 4)
    score = np.array([1 / 3, -2.5e-7, 123456.789, 0.0], dtype=np.float32)
    track = AttributionTrack(region, one_hot("ACGT"), np.zeros((4, 4), np.float32), score, 0.0)
    path = write(tmp_path / "m.bg", "bedgraph", [track])
    lines = path.read_text().splitlines()[1:]
    assert lines == [
        "chrM\t0\t1\t0.333333343",
        "chrM\t1\t2\t-2.49999999e-07",
        "chrM\t2\t3\t123456.789",
        "chrM\t3\t4\t0",
    ]
    assert [np.float32(line.split("\t")[3]) for line in lines] == score.tolist()


# --- bigWig ---------------------------------------------------------------------------


def test_bigwig_content(tmp_path):
    path = write(tmp_path / "out.bw", "bigwig", ADDED)
    assert folder_listing(tmp_path) == ["out.bw"]
    handle = pyBigWig.open(str(path))
    try:
        assert handle.isBigWig()
        assert handle.chroms() == SIZES
        assert list(handle.chroms()) == ["chr2", "chr10", "chr1", "chrM"]
        for track in ADDED:
            region = track.region
            values = np.array(handle.values(region.chrom, region.start, region.end), dtype=np.float32)
            np.testing.assert_array_equal(values, track.score)  # NaN where masked
        assert handle.intervals("chrM") is None
        intervals = [(chrom, start, end, np.float32(value))
                     for chrom in SIZES for start, end, value in (handle.intervals(chrom) or ())]
        assert intervals == [run for track in IN_ORDER for run in expected_runs(track)]
        assert np.isnan(handle.values("chr1", 560, 561)[0])  # between regions
    finally:
        handle.close()


def test_same_numbers_in_all_formats(tmp_path):
    paths = {fmt: write(tmp_path / f"out{SUFFIX[fmt]}", fmt, ADDED) for fmt in SUFFIX}
    _, rows = read_bedgraph(paths["bedgraph"])
    bigwig = pyBigWig.open(str(paths["bigwig"]))
    with h5py.File(paths["h5"], "r") as h5:
        from_h5 = []
        for track in IN_ORDER:
            score = h5[track.region.to_string()]["score"][()]
            from_bw = np.array(bigwig.values(track.region.chrom, track.region.start, track.region.end), np.float32)
            np.testing.assert_array_equal(score, from_bw)
            starts, ends, values = value_runs(score)
            from_h5 += [(track.region.chrom, track.region.start + s, track.region.start + e, v)
                        for s, e, v in zip(starts.tolist(), ends.tolist(), values)]
    bigwig.close()
    assert from_h5 == rows


@pytest.mark.parametrize("fmt", ["bedgraph", "bigwig"])
def test_interval_formats_refuse_overlaps(tmp_path, fmt):
    path = tmp_path / f"out{SUFFIX[fmt]}"
    inner = make_track(Region("chr1", 2999, 3100), 6)
    with pytest.raises(OutputError) as info:
        write(path, fmt, [A, B, inner])
    assert str(info.value) == (
        f"regions chr1:1001-3000 and chr1:3000-3100 overlap; a {fmt} track holds one value per base "
        "(combine them with --overlap mean|max|first, or write .h5)"
    )
    with pytest.raises(OutputError, match="overlap; a"):
        write(path, fmt, [B, B])
    assert folder_listing(tmp_path) == []


@pytest.mark.parametrize("fmt", ["bedgraph", "bigwig"])
def test_all_masked_track(tmp_path, fmt):
    region = Region("chr2", 0, 5)
    track = AttributionTrack(region, one_hot("NNNNN"), np.zeros((5, 4), np.float32),
                             np.full(5, np.nan, np.float32), 0.0)
    path = write(tmp_path / f"out{SUFFIX[fmt]}", fmt, [track])
    if fmt == "bedgraph":
        assert len(path.read_text().splitlines()) == 1
    else:
        handle = pyBigWig.open(str(path))
        assert handle.chroms() == SIZES
        assert handle.intervals("chr2") is None
        handle.close()


# --- atomic output ----------------------------------------------------------------------


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("fmt", ["h5", "bedgraph", "bigwig"])
def test_failure_inside_block_leaves_nothing(tmp_path, fmt):
    path = tmp_path / f"out{SUFFIX[fmt]}"
    with pytest.raises(Boom):
        with open_writer(path, fmt, META, SIZES) as writer:
            writer.add(B)
            assert len(folder_listing(tmp_path)) == 1  # only the hidden temporary file
            assert folder_listing(tmp_path)[0].startswith(f".out{SUFFIX[fmt]}.")
            assert folder_listing(tmp_path)[0].endswith(".part")
            raise Boom("model failed")
    assert folder_listing(tmp_path) == []


def test_interrupt_inside_block_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with open_writer(tmp_path / "out.bw", "bigwig", META, SIZES) as writer:
            writer.add(B)
            raise KeyboardInterrupt
    assert folder_listing(tmp_path) == []


@pytest.mark.parametrize("fmt", ["h5", "bedgraph", "bigwig"])
def test_existing_output_without_force(tmp_path, fmt):
    path = tmp_path / f"out{SUFFIX[fmt]}"
    path.write_bytes(b"old content")
    with pytest.raises(OutputError) as info:
        open_writer(path, fmt, META, SIZES)
    assert str(info.value) == f"output {path} already exists (use --force to overwrite it)"
    assert path.read_bytes() == b"old content"
    assert folder_listing(tmp_path) == [path.name]


@pytest.mark.parametrize("fmt", ["h5", "bedgraph", "bigwig"])
def test_force_replaces_only_on_success(tmp_path, fmt):
    path = tmp_path / f"out{SUFFIX[fmt]}"
    path.write_bytes(b"old content")
    with pytest.raises(Boom):
        with open_writer(path, fmt, META, SIZES, force=True) as writer:
            writer.add(B)
            raise Boom
    assert path.read_bytes() == b"old content"
    assert folder_listing(tmp_path) == [path.name]
    write(path, fmt, [B], force=True)
    assert path.read_bytes() != b"old content"
    assert folder_listing(tmp_path) == [path.name]
    if fmt == "h5":
        with h5py.File(path, "r") as handle:
            assert list(handle) == ["chr2:101-600"]
    elif fmt == "bedgraph":
        assert read_bedgraph(path)[1] == expected_runs(B)
    else:
        handle = pyBigWig.open(str(path))
        assert handle.chroms() == SIZES
        handle.close()


def test_failure_while_finishing_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.bg"
    path.write_bytes(b"old content")

    def broken_finish(self):
        Path(self.output.temp_path).write_text("half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BedGraphWriter, "_finish", broken_finish)
    with pytest.raises(OutputError) as info:  # the disk's failure, as one line naming the output
        write(path, "bedgraph", [B], force=True)
    assert str(info.value) == f"cannot write {path}: No space left on device"
    assert path.read_bytes() == b"old content"
    assert folder_listing(tmp_path) == ["out.bg"]


def test_output_folder_missing(tmp_path):
    path = tmp_path / "missing" / "out.h5"
    with pytest.raises(OutputError) as info:
        open_writer(path, "h5", META, SIZES)
    assert str(info.value) == f"output folder {tmp_path / 'missing'} does not exist"
    assert folder_listing(tmp_path) == []


@pytest.mark.parametrize("force", [False, True])
def test_output_path_is_a_directory(tmp_path, force):
    folder = tmp_path / "out.h5"
    folder.mkdir()
    with pytest.raises(OutputError) as info:
        open_writer(folder, "h5", META, SIZES, force=force)
    assert str(info.value) == f"output {folder} is a directory"
    assert folder_listing(tmp_path) == ["out.h5"]
    assert folder_listing(folder) == []


def test_check_output_path(tmp_path):
    path = tmp_path / "a.h5"
    assert check_output_path(path) == path
    assert check_output_path(str(path)) == path
    path.write_text("x")
    assert check_output_path(path, force=True) == path
    with pytest.raises(OutputError, match="already exists"):
        check_output_path(path)


@pytest.mark.parametrize("fmt", ["h5", "bedgraph", "bigwig"])
def test_output_gets_normal_file_permissions(tmp_path, fmt):
    """The temporary file is private (0600); the finished output follows the umask."""
    old = os.umask(0o022)
    try:
        path = write(tmp_path / f"out{SUFFIX[fmt]}", fmt, [B])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_output_commit_and_abort(tmp_path):
    output = AtomicOutput(tmp_path / "x.txt")
    output.temp_path.write_text("done")
    assert folder_listing(tmp_path) == [output.temp_path.name]
    output.commit()
    output.abort()  # after commit: nothing to remove
    assert folder_listing(tmp_path) == ["x.txt"]
    assert (tmp_path / "x.txt").read_text() == "done"
    second = AtomicOutput(tmp_path / "y.txt")
    second.abort()
    second.abort()
    assert folder_listing(tmp_path) == ["x.txt"]
