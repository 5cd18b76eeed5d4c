"""`pgf export modisco`: windows of a `pgf attribute` output as TF-MoDISco (modisco-lite) inputs.

Every region of the HDF5 file becomes one example of W positions: centred on
the region's middle (`--center region`) or on its highest |score| (`--center
peak`), shifted to stay inside the region. W (even; default: the regions'
common length) must not exceed any region's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgf.errors import PgfUserError
from pgf.io.modisco import output_paths, read_attributions, write_modisco_inputs

CENTERS = ("region", "peak")


@dataclass
class ExportModiscoRequest:
    h5: Path
    prefix: Path
    window: int | None = None
    center: str = "region"
    dataset: str | None = None
    force: bool = False


@dataclass
class ExportSummary:
    examples: int
    width: int
    paths: list[Path]


def window_start(length: int, width: int, center: str, score: np.ndarray) -> int:
    """First position of the W-wide window inside a region of `length`."""
    if center == "region":
        return length // 2 - width // 2
    finite = np.where(np.isnan(score), -np.inf, np.abs(score))
    peak = int(np.argmax(finite))
    return min(max(peak - width // 2, 0), length - width)


def run_export_modisco(request: ExportModiscoRequest) -> ExportSummary:
    if request.center not in CENTERS:
        raise PgfUserError(f"unknown --center {request.center!r}; choose region or peak")
    for path in output_paths(request.prefix):
        if path.exists() and not request.force:
            raise PgfUserError(f"output {path} already exists (use --force to overwrite it)")
    records = read_attributions(request.h5, request.dataset)
    lengths = sorted({len(r.onehot) for r in records})
    width = request.window
    if width is None:
        if len(lengths) > 1:
            raise PgfUserError(f"regions have different lengths ({lengths[0]:,}-{lengths[-1]:,} bp); give --window W (even)")
        width = lengths[0]
    if width < 2 or width % 2:
        raise PgfUserError(f"the window must be even (modisco slices W/2 positions each side of the centre); got {width}")
    short = [r for r in records if len(r.onehot) < width]
    if short:
        raise PgfUserError(f"{len(short)} region(s) are shorter than the window of {width:,} bp, e.g. {short[0].name} "
                           f"({len(short[0].onehot):,} bp); choose a smaller --window")
    ohe = np.empty((len(records), 4, width), dtype=np.float32)
    hyp = np.empty_like(ohe)
    bed = []
    for i, record in enumerate(records):
        first = window_start(len(record.onehot), width, request.center, record.score)
        ohe[i] = record.onehot[first : first + width].T
        hyp[i] = record.hypothetical[first : first + width].T
        bed.append((record.chrom, record.start + first, record.start + first + width, record.name))
    paths = write_modisco_inputs(request.prefix, ohe, hyp, bed, request.force)
    return ExportSummary(len(records), width, paths)
