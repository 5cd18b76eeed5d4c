"""The `pgf report` page: igv.js, one lazily loaded igv.js session per region, and a table that navigates.

Each region's session (reference slice, attribution track, BED and VCF slices as
gzip data URIs) sits in its own `<script type="application/json">` block and is
parsed only when its row is chosen, so the page opens fast however many regions
it holds; its size grows with the bases shown (see README, `pgf report`).
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from dataclasses import dataclass, field

from pgf.viz.extras import IgvJs


def data_uri(text: str) -> str:
    """A gzip-compressed base64 data URI, the form igv.js reads (as igv-reports writes it)."""
    return "data:application/gzip;base64," + base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


@dataclass
class Row:
    """One row of the table: cells shown, the session it loads and the locus it goes to."""

    cells: list[str]
    session: int
    locus: str
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, locus) inside the last cell


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[Row]


def _json_block(element_id: str, value: object) -> str:
    text = json.dumps(value, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _table(table: Table, index: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = [f"<td>{html.escape(c)}</td>" for c in row.cells]
        if row.links:
            links = " ".join(f'<a href="#" data-locus="{html.escape(locus)}">{html.escape(label)}</a>' for label, locus in row.links)
            cells.append(f"<td>{links}</td>")
        body.append(f'<tr data-session="{row.session}" data-locus="{html.escape(row.locus)}">{"".join(cells)}</tr>')
    return (f'<h2>{html.escape(table.title)}</h2><table class="pgf-table" id="pgf-table-{index}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


SCRIPT = """
(function () {
  const status = document.getElementById('pgf-status');
  let browser = null, current = -1;
  function session(i) { return JSON.parse(document.getElementById('pgf-session-' + i).textContent); }
  async function show(i, locus) {
    status.textContent = 'loading ' + locus;
    if (i !== current) {
      const config = session(i);
      config.locus = locus;
      if (browser === null) {
        browser = await igv.createBrowser(document.getElementById('pgf-igv'), config);
      } else {
        await browser.loadSession(config);
      }
      current = i;
    } else {
      await browser.search(locus);
    }
    document.querySelectorAll('tr.pgf-selected').forEach(r => r.classList.remove('pgf-selected'));
    document.querySelectorAll('tr[data-session="' + i + '"][data-locus="' + locus + '"]').forEach(r => r.classList.add('pgf-selected'));
    status.textContent = 'showing ' + locus;
    window.pgfShown = {session: i, locus: locus};
  }
  document.querySelectorAll('table.pgf-table tbody tr').forEach(function (row) {
    row.addEventListener('click', function (event) {
      const link = event.target.closest('a[data-locus]');
      if (link) { event.preventDefault(); }
      show(Number(row.dataset.session), link ? link.dataset.locus : row.dataset.locus);
    });
  });
  const first = document.querySelector('table.pgf-table tbody tr');
  window.pgfReady = first ? show(Number(first.dataset.session), first.dataset.locus) : Promise.resolve();
  window.pgfBrowser = function () { return browser; };
})();
"""

STYLE = """
body { font-family: sans-serif; margin: 1em; }
#pgf-igv { border: 1px solid #ccc; min-height: 300px; }
table.pgf-table { border-collapse: collapse; font-size: 13px; margin-bottom: 1em; }
table.pgf-table td, table.pgf-table th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
table.pgf-table tbody tr { cursor: pointer; }
table.pgf-table tbody tr:hover { background: #eef; }
tr.pgf-selected { background: #dde8ff; }
.pgf-note { color: #555; font-size: 12px; }
"""


def render(title: str, note: str, sessions: list[dict], tables: list[Table], igv: IgvJs) -> str:
    """The whole self-contained HTML page."""
    blocks = "\n".join(_json_block(f"pgf-session-{i}", s) for i, s in enumerate(sessions))
    tables_html = "\n".join(_table(t, i) for i, t in enumerate(tables))
    licence = html.escape(igv.licence).replace("*/", "* /")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style>
<script>/* igv.js {html.escape(igv.version)} (https://github.com/igvteam/igv.js), as shipped by the igv-notebook package.
{licence} */
{igv.source}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="pgf-note">{html.escape(note)} igv.js {html.escape(igv.version)}. <span id="pgf-status"></span></p>
<div id="pgf-igv"></div>
{tables_html}
{blocks}
<script>{SCRIPT}</script>
</body></html>
"""
