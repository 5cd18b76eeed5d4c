"""Window plans for --window/--stride."""

import pytest

from pgf.errors import PgfUserError
from pgf.workflows.windows import WindowSpan, window_spans


@pytest.mark.parametrize("length, window, stride", [(1000, 300, 100), (1000, 300, 300), (1001, 256, 64), (999, 1000, 10), (50, 10, 7)])
def test_crops_tile_the_region_and_sit_inside_their_windows(length, window, stride):
    spans = window_spans(length, window, stride)
    assert spans[0].crop_start == 0 and spans[-1].crop_end == length
    for previous, current in zip(spans, spans[1:]):
        assert previous.crop_end == current.crop_start
    for span in spans:
        assert 0 <= span.start <= span.crop_start < span.crop_end <= span.end <= length
        assert span.end - span.start == min(window, length)


def test_centred_crop_has_context_on_both_sides():
    spans = window_spans(1000, 300, 100)
    middle = spans[4]
    assert middle == WindowSpan(300, 600, 400, 500)


@pytest.mark.parametrize("window, stride, message", [(0, 1, "must be positive"), (10, 20, "larger than --window")])
def test_bad_windows(window, stride, message):
    with pytest.raises(PgfUserError, match=message):
        window_spans(100, window, stride)
