"""Context-sized windows for regions longer than a model was trained on (`--window W --stride S`).

The region is cut into consecutive crops of S positions; crop c is computed
inside a window of W positions centred on it (shifted to stay inside the
region), whose target is the model's target over that window alone. The
track keeps, for every base, the gradient from the window in which it lies in
the centre crop, so each base sees at least (W - S) / 2 bases of context on
each side except at the region's ends. This is a different quantity from the
one-pass gradient of one target over the whole region (the default).
"""

from __future__ import annotations

from dataclasses import dataclass

from pgf.errors import PgfUserError


@dataclass(frozen=True)
class WindowSpan:
    """Offsets within the region: the window computed and the crop kept from it."""

    start: int
    end: int
    crop_start: int
    crop_end: int


def window_spans(length: int, window: int, stride: int) -> list[WindowSpan]:
    """Windows covering [0, length) whose crops tile it without gaps or overlaps."""
    if window < 1 or stride < 1:
        raise PgfUserError("--window and --stride must be positive")
    if stride > window:
        raise PgfUserError(f"--stride {stride:,} is larger than --window {window:,}; crops would leave gaps")
    if length <= window:
        return [WindowSpan(0, length, 0, length)]
    spans = []
    margin = (window - stride) // 2
    for crop_start in range(0, length, stride):
        crop_end = min(crop_start + stride, length)
        start = min(max(crop_start - margin, 0), length - window)
        spans.append(WindowSpan(start, start + window, crop_start, crop_end))
    return spans
