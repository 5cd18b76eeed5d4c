"""The optional libraries behind `pgf plot` and `pgf report`, with a one-line error when missing.

igv.js is not part of this repository: `pgf report` inlines the copy that the
`igv-notebook` package (MIT, from the igv.js authors) ships inside its wheel
(`igv_notebook/js/igv.min.js`), found through the installed distribution's
files, so nothing is downloaded when a report is written or opened.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from types import ModuleType

from pgf.errors import PgfUserError

PLOT_INSTALL = 'pip install "pgf[plot]"'
REPORT_INSTALL = 'pip install "pgf[report]"'
IGV_DISTRIBUTION = "igv-notebook"
IGV_FILE = "igv_notebook/js/igv.min.js"
IGV_VERSION_FILE = "igv_notebook/VERSION_IGV"


class MissingExtraError(PgfUserError):
    """An optional dependency of a command is not installed."""


def _missing(name: str, command: str, install: str) -> MissingExtraError:
    return MissingExtraError(f"{command} needs {name}, which is not installed; install it with: {install}")


def plotting() -> tuple[ModuleType, ModuleType]:
    """(matplotlib.pyplot on the Agg backend, logomaker), or a `MissingExtraError` naming the install command."""
    try:
        import matplotlib
    except ImportError:
        raise _missing("matplotlib", "pgf plot", PLOT_INSTALL) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    try:
        import logomaker
    except ImportError:
        raise _missing("logomaker", "pgf plot", PLOT_INSTALL) from None
    return pyplot, logomaker


@dataclass(frozen=True)
class IgvJs:
    """The igv.js bundle to inline: its source, version and licence text."""

    source: str
    version: str
    licence: str


def igv_js() -> IgvJs:
    """igv.js from the installed `igv-notebook` package (the `report` extra), without importing it."""
    try:
        dist = importlib.metadata.distribution(IGV_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError(f"pgf report needs igv.js from the {IGV_DISTRIBUTION} package, which is not installed; "
                                f"install it with: {REPORT_INSTALL}") from None
    script = dist.locate_file(IGV_FILE)
    try:
        source = script.read_text(encoding="utf-8")
    except OSError:
        raise MissingExtraError(f"the installed {IGV_DISTRIBUTION} has no {IGV_FILE}; reinstall it with: {REPORT_INSTALL}") from None
    version_file = dist.locate_file(IGV_VERSION_FILE)
    version = version_file.read_text().strip() if version_file.exists() else "unknown"
    licence = next((f.read_text() for f in (dist.files or []) if f.name.upper().startswith("LICENSE")), "MIT License")
    return IgvJs(source.replace("</script", "<\\/script"), version, licence)
