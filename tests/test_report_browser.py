"""`pgf report`'s page in a real headless browser: Debian's Chromium driven by selenium.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install chromium chromium-driver`;
.ci/run installs them); nothing here downloads a browser. The page is opened from a file with
the network unused: igv.js and every track come from inside it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.io.genome import Genome
from pgf.io.regions import Region
from tests.viz_fixtures import FASTA, REGIONS, TRUTH, VCF, model_attributions

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("no browser: /usr/bin/chromium and /usr/bin/chromedriver are missing "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)
pytest.importorskip("igv_notebook", reason="the report extra (igv-notebook) is not installed")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

# What the browser drew: per igv.js track, its type, the features it holds in view and the
# painted (non-transparent) pixels of its canvas.
TRACKS = """
const browser = window.pgfBrowser();
return browser.trackViews.map(function (view) {
  const viewport = view.viewports[0];
  const canvas = viewport.canvas;
  let painted = 0;
  if (canvas && canvas.width > 0 && canvas.height > 0) {
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  }
  const cache = viewport.featureCache;
  const features = cache && Array.isArray(cache.features) ? cache.features.map(f => [f.start, f.end, f.value === undefined ? null : f.value]) : [];
  return {type: view.track.type, name: view.track.name || '', painted: painted, features: features};
});
"""
WAIT = "const done = arguments[arguments.length - 1]; window.pgfReady.then(() => done('ok'), e => done(String(e)));"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(app, ["report", str(model_attributions(tmp_path_factory)), "--fasta", str(FASTA),
                                      "--bed", str(TRUTH), "--vcf", str(VCF), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="pgf-chromium-")
    for flag in FLAGS + [f"--user-data-dir={profile}", "--window-size=1200,900"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shown(driver) -> dict:
    driver.execute_async_script("const done = arguments[arguments.length - 1]; "
                                "(function wait() { window.pgfShown ? done() : setTimeout(wait, 50); })();")
    return driver.execute_script("return window.pgfShown;")


def navigate(driver, css: str, locus: str) -> list[dict]:
    """Click a table element and wait until igv.js shows `locus` and has drawn."""
    driver.find_element("css selector", css).click()
    driver.execute_async_script(
        "const [locus, done] = arguments; (function wait() { "
        "(window.pgfShown && window.pgfShown.locus === locus) ? done() : setTimeout(wait, 50); })();", locus)
    driver.execute_async_script("const done = arguments[arguments.length - 1]; setTimeout(done, 500);")  # let igv.js paint
    return driver.execute_script(TRACKS)


def scores(h5: Path, region_spec: str) -> tuple[Region, np.ndarray]:
    with h5py.File(h5) as f:
        group = f[region_spec.replace(",", "")]
        return Region("chr1", int(group.attrs["start"]), int(group.attrs["end"])), group["score"][()]


def test_page_draws_every_track_offline_and_its_rows_navigate(page, browser, tmp_path_factory):
    h5 = model_attributions(tmp_path_factory)
    browser.get(page.as_uri())
    assert browser.execute_async_script(WAIT) == "ok"
    drawn = {t["type"]: t for t in browser.execute_script(TRACKS)}
    for kind in ("wig", "annotation", "variant"):
        assert drawn[kind]["painted"] > 100, (kind, drawn[kind]["painted"])
    region, values = scores(h5, REGIONS[0])
    wig = drawn["wig"]["features"]
    # zoomed out, igv.js bins the bases (about a pixel each): the bins span the region
    assert len(wig) > 500 and min(f[0] for f in wig) == region.start and max(f[1] for f in wig) == pytest.approx(region.end, abs=2)

    # a top base of region 1: igv.js zooms to base level; the reference bases and the scores are the file's
    best = region.start + int(np.nanargmax(np.abs(values)))
    locus = f"chr1:{best - 20 + 1}-{best + 21}"
    tracks = navigate(browser, f'#pgf-table-0 a[data-locus="{locus}"]', locus)
    sequence = next(t for t in tracks if t["type"] == "sequence")
    assert sequence["painted"] > 100  # the letters of the bases
    bases = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.pgfBrowser().genome.getSequence('chr1', arguments[0], arguments[1]).then(done);",
        best - 20, best + 21)
    with Genome(FASTA) as genome:
        assert bases == genome.fetch(Region("chr1", best - 20, best + 21))
    wig = {f[0]: f[2] for f in next(t for t in tracks if t["type"] == "wig")["features"]}
    for position in range(best - 20, best + 21):
        assert wig[position] == pytest.approx(values[position - region.start], rel=1e-3)

    # the second region's row loads its own session
    region2, _ = scores(h5, REGIONS[1])
    locus2 = f"chr1:{region2.start + 1}-{region2.end}"
    tracks = navigate(browser, f'#pgf-table-0 tr[data-locus="{locus2}"] td', locus2)
    assert shown(browser) == {"session": 1, "locus": locus2}
    wig = next(t for t in tracks if t["type"] == "wig")
    assert wig["painted"] > 100
    assert min(f[0] for f in wig["features"]) == region2.start
    assert max(f[1] for f in wig["features"]) == pytest.approx(region2.end, abs=2)

    # nothing came from the network, and the console holds no errors
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert all(name.startswith(("data:", "file:", "blob:")) for name in resources), resources
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
