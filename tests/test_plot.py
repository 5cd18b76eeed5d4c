"""`pgf plot`: the track (with gaps at masked bases), logos of the strongest windows, overlays, the element summary."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.io.effect_writers import EffectResult, Perturbation, write_effect_hdf5
from pgf.io.genome import Genome
from pgf.io.regions import Region
from pgf.viz import figure
from pgf.viz.attribution import AttributionFile, RegionScores
from pgf.viz.ranking import element_ranks
from tests.viz_fixtures import FASTA, REGIONS, TRUTH, model_attributions

pytest.importorskip("matplotlib")
pytest.importorskip("logomaker")
from PIL import Image  # noqa: E402  (matplotlib depends on pillow)

runner = CliRunner()


@pytest.fixture(scope="module")
def h5(tmp_path_factory) -> Path:
    return model_attributions(tmp_path_factory)


def plot(*args: str):
    return runner.invoke(app, ["plot", *map(str, args)])


def strongest_window(h5: Path, region: str, width: int) -> Region:
    """Brute force: the window of `width` bp with the largest sum of |score| (independent of pgf.viz)."""
    with h5py.File(h5) as f:
        group = f[region.replace(",", "")]
        score, start = np.abs(group["score"][()].astype(np.float64)), int(group.attrs["start"])
    sums = [score[i : i + width].sum() for i in range(len(score) - width + 1)]
    best = int(np.argmax(sums))
    return Region("chr1", start + best, start + best + width)


def test_png_has_the_track_and_logos_and_prints_element_ranks(h5, tmp_path):
    out = tmp_path / "plot.png"
    result = plot(h5, "--region", REGIONS[0], "--bed", TRUTH, "-o", out)
    assert result.exit_code == 0, result.output
    assert re.search(r"chr1_promoter_9: best base ranks \d+ of 1,500; \d+ of its bases in the top 1%", result.stdout)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[1] == 1210  # 11 in at 110 dpi
    assert image.shape[0] > 500  # the track and two rows of logos
    ink = (image < 200).any(axis=2)
    assert 0.02 < ink.mean() < 0.6
    coloured = (np.ptp(image.astype(int), axis=2) > 100).mean()  # the logo letters are coloured
    assert coloured > 0.01


def test_svg_logo_letters_are_the_top_windows_bases_in_order(h5, tmp_path):
    out = tmp_path / "plot.svg"
    result = plot(h5, "--region", REGIONS[0], "--logo-width", 12, "--logos", 1, "-o", out)
    assert result.exit_code == 0, result.output
    window = strongest_window(h5, REGIONS[0], 12)
    with Genome(FASTA) as genome:
        expected = genome.fetch(window).upper()
    letters = {int(pos): base for pos, base in re.findall(r'id="pgf-logo1-(\d+)-([ACGT])"', out.read_text())}
    assert len(letters) >= 10  # positions with a non-zero score each draw their letter
    assert min(letters) >= window.start + 1 and max(letters) <= window.end
    assert all(letters[p] == expected[p - window.start - 1] for p in letters)


def test_logos_hold_the_observed_and_hypothetical_scores(h5):
    with AttributionFile(h5) as f:
        scores = f.load(f.find(REGIONS[0])[0])
    windows = [Region("chr1", 104_620, 104_640), Region("chr1", 104_000, 104_015)]
    fig, logos = figure.draw(scores, windows, [], None, "t")
    assert len(logos) == 4  # observed and hypothetical per window
    with h5py.File(h5) as f:
        group = f[REGIONS[0].replace(",", "")]
        lo = 104_620 - int(group.attrs["start"])
        hyp = group["hypothetical"][lo : lo + 20]
        score, onehot = group["score"][lo : lo + 20], group["onehot"][lo : lo + 20]
    observed, hypothetical = logos[0].df, logos[1].df
    assert list(observed.index) == list(range(104_621, 104_641))
    np.testing.assert_allclose(observed.to_numpy(), onehot * score[:, None], rtol=1e-6)
    np.testing.assert_allclose(hypothetical.to_numpy(), hyp, rtol=1e-6)


def test_masked_bases_are_gaps_in_the_track():
    region = Region("chr2", 1_000, 1_400)
    score = (np.sin(np.arange(400) / 7) + 1.5).astype(np.float32)
    score[150:250] = np.nan  # N bases: no score
    onehot = np.tile(np.eye(4, dtype=np.uint8), (100, 1))
    fig, _ = figure.draw(RegionScores(region, score, onehot, None, 1.0), [], [], None, "gaps")
    track = fig.axes[0]
    for line in track.lines[1:]:
        line.remove()  # the zero line: only the score's line is judged
    track.set_ylim(-1, 3)
    fig.set_dpi(100)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(int)
    box = track.get_window_extent()
    top, bottom = int(image.shape[0] - box.y1) + 3, int(image.shape[0] - box.y0) - 3
    dark = (image < 230).any(axis=2)[top:bottom]  # the track's line (the frame's rows and columns left out)

    def columns(first: int, last: int) -> np.ndarray:
        """Pixel columns of genome positions first..last (1-based), inside the frame."""
        (x0, _), (x1, _) = track.transData.transform([(first, 0), (last, 0)])
        return dark[:, int(np.ceil(x0)) + 1 : int(x1) - 1]

    assert columns(region.start + 160, region.start + 240).sum() == 0  # nothing where the bases are masked
    assert columns(region.start + 5, region.start + 140).any(axis=0).mean() > 0.95  # the line elsewhere
    assert columns(region.start + 260, region.end - 5).any(axis=0).mean() > 0.95


def test_effect_overlay_draws_the_variants_track(h5, tmp_path):
    region = Region("chr1", 103_800, 105_300)
    values = np.zeros((1500, 2), dtype=np.float32)
    values[:, 0] = np.linspace(-1, 1, 1500)
    result = EffectResult(Perturbation("chr1:104622:G>T", 104_621, 2, 3), values, None)
    metadata = {"region": str(region), "chrom": "chr1", "start": region.start, "end": region.end, "channels": "expression,accessibility"}
    effect = tmp_path / "effect.h5"
    write_effect_hdf5(effect, False, metadata, values, [result])
    out = tmp_path / "effect.png"
    run = plot(h5, "--region", REGIONS[0], "--effect", effect, "-o", out)
    assert run.exit_code == 0, run.output
    from pgf.viz.overlays import read_effect

    track = read_effect(effect)
    assert track.position == 104_621 and track.label == "linear effect on expression"
    with AttributionFile(h5) as f:
        scores = f.load(f.find(REGIONS[0])[0])
    fig, _ = figure.draw(scores, [], [], track, "t")
    effect_axes = [ax for ax in fig.axes if "chr1:104622:G>T" in ax.get_title(loc="left")]
    assert len(effect_axes) == 1
    np.testing.assert_allclose(effect_axes[0].lines[0].get_ydata(), values[:, 0])


def test_element_ranks_count_top_percent_and_ratio_to_the_median():
    region = Region("chr1", 1000, 2000)
    score = np.ones(1000, dtype=np.float32)
    score[500:510] = -np.arange(10, 20)  # the element's bases: the 10 largest |score| of the region
    element = Region("chr1", 1500, 1510, "e")
    (rank,) = element_ranks(score, region, [element, Region("chr2", 0, 10, "elsewhere")])
    assert rank.line() == "e: best base ranks 1 of 1,000; 10 of its bases in the top 1%; best base 19x the median base"
    score[500:510] = 0.5
    (rank,) = element_ranks(score, region, [element])
    assert (rank.best_rank, rank.in_top_percent) == (991, 0)


def test_missing_plot_extra_is_a_one_line_error(h5, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "logomaker", None)  # `import logomaker` now raises ImportError
    result = plot(h5, "--region", REGIONS[0], "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    assert result.stderr.strip() == ('error: pgf plot needs logomaker, which is not installed; '
                                     'install it with: pip install "pgf[plot]"')


@pytest.mark.parametrize(
    "args, message",
    [
        (["--region", "chr1:1-100"], "is not inside any region"),
        (["--region", "chr9:1-100"], "is not in"),
        ([], "holds 2 regions; choose one with --region"),
        (["--region", REGIONS[0], "--window", "chr1:133,201-133,220"], "is not inside the plotted region"),
    ],
)
def test_region_errors(h5, tmp_path, args, message):
    result = plot(h5, *args, "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreadable_input_and_bad_output_suffix(h5, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    result = plot(bad, "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "cannot read" in result.stderr
    result = plot(h5, "--region", REGIONS[0], "-o", tmp_path / "x.jpg")
    assert result.exit_code == 2 and ".png, .svg or .pdf" in result.stderr
    assert not (tmp_path / "x.jpg").exists()


SAMPLE_JOB = ["attribute", "sample_data/genome.fa", "--region", "chr1:99,578-139,116",
              "--target-window", "chr1:104,553-104,752"]


@pytest.mark.slow
def test_sample_job_summary_matches_the_readme(tmp_path, monkeypatch):
    """The README's numbers for the sample job: the promoter's and the distal enhancer's ranks."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    out = tmp_path / "sample.h5"
    assert runner.invoke(app, [*SAMPLE_JOB, "-o", str(out), "-q"]).exit_code == 0
    result = plot(out, "--bed", TRUTH, "-o", tmp_path / "sample.png")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert ("chr1_promoter_9: best base ranks 1 of 39,539; 119 of its bases in the top 1%; "
            "best base 85,670x the median base") in lines
    assert ("chr1_enhancer_5: best base ranks 12 of 39,539; 66 of its bases in the top 1%; "
            "best base 8,831x the median base") in lines
