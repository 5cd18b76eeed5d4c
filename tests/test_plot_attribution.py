"""scripts/plot_attribution.py's printed summary: how a planted element stands out of a region's scores."""

from types import SimpleNamespace

import numpy as np

from scripts import plot_attribution as plot


def test_element_summary_ranks_counts_top_percent_and_ratio_to_the_median():
    scores = np.ones(1000)
    scores[500:510] = np.arange(10, 20)  # the element's bases: the 10 best of the region
    in_motif = np.zeros(1000, dtype=bool)
    in_motif[505:510] = True
    element = SimpleNamespace(name="e", role="enhancer", start=1500, end=1510)  # region starts at 1000
    summary = plot.element_summary(element, scores, 1000, in_motif)
    assert summary == ("e (enhancer): best base ranks 1 of 1,000; 10 of its bases in the top 1% "
                       "(5 in planted motifs); best base 19x the median base")
    scores[500:510] = 0.5  # now below every background base
    assert "best base ranks 991 of 1,000; 0 of its bases in the top 1%" in plot.element_summary(element, scores, 1000, in_motif)
