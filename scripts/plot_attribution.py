"""Plot one region of a `pgf attribute` HDF5 output against the planted truth (PNG).

    pip install matplotlib     # a plotting tool for this script only, not a pgf dependency
    pgf attribute sample_data/genome.fa --region ... --target-window ... -o sample_out.h5
    python -m scripts.plot_attribution sample_out.h5 docs/sample_attribution.png

Top panel: abs(input x gradient) (the `score` dataset) along the region, with every
planted element of sample_data/truth_elements.bed shaded by role. Bottom panels:
zooms on the target promoter and on its distal enhancer, bases coloured by whether
they lie in a planted motif.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

from pgf.sim.truth import read_truth_elements, read_truth_motifs

ROOT = Path(__file__).resolve().parents[1]
ROLE_COLOURS = {"promoter": "tab:red", "enhancer": "tab:green", "insulator": "tab:purple", "silencer": "tab:grey"}


def read_region(path: Path) -> tuple[str, int, int, np.ndarray]:
    """(chrom, start, end, abs(score)) of the file's only region."""
    with h5py.File(path, "r") as handle:
        names = list(handle)
        if len(names) != 1:
            sys.exit(f"error: {path} holds {len(names)} regions; plot one region at a time")
        group = handle[names[0]]
        attrs = dict(group.attrs)
        return str(attrs["chrom"]), int(attrs["start"]), int(attrs["end"]), np.abs(group["score"][()])


def element_summary(element, scores: np.ndarray, start: int, in_motif: np.ndarray) -> str:
    """How one planted element stands out of the region's abs(input x gradient): its best
    base's rank, its bases in the region's top 1%, and its best base over the median base."""
    lo, hi = max(element.start, start) - start, min(element.end - start, len(scores))
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(scores), dtype=np.int64)
    rank[order] = np.arange(1, len(scores) + 1)
    top = rank[lo:hi] <= max(1, len(scores) // 100)
    median = float(np.median(scores))
    ratio = f"{scores[lo:hi].max() / median:,.0f}x the median base" if median > 0 else "median base is 0"
    return (f"{element.name} ({element.role}): best base ranks {rank[lo:hi].min():,} of {len(scores):,}; "
            f"{int(top.sum())} of its bases in the top 1% ({int((top & in_motif[lo:hi]).sum())} in planted motifs); "
            f"best base {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("h5", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--sample", type=Path, default=ROOT / "sample_data")
    args = parser.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("error: this script needs matplotlib (pip install matplotlib)")

    chrom, start, end, scores = read_region(args.h5)
    elements = [e for e in read_truth_elements(args.sample / "truth_elements.bed") if e.chrom == chrom and e.end > start and e.start < end]
    motifs = [m for m in read_truth_motifs(args.sample / "truth_motifs.bed") if m.chrom == chrom and m.end > start and m.start < end]
    positions = np.arange(start, end)
    in_motif = np.zeros(end - start, dtype=bool)
    for m in motifs:
        in_motif[max(m.start, start) - start : min(m.end, end) - start] = True

    promoters = [e for e in elements if e.role == "promoter" and e.distal_partner]
    zooms = []
    if promoters:
        promoter = max(promoters, key=lambda e: scores[max(e.start, start) - start : e.end - start].max())
        partner = next((e for e in elements if e.name == promoter.distal_partner), None)
        zooms = [e for e in (promoter, partner) if e is not None]

    figure, axes = plt.subplots(
        2 if zooms else 1, max(1, len(zooms)), figsize=(11, 5.5 if zooms else 3), squeeze=False,
        gridspec_kw={"height_ratios": [1.2, 1] if zooms else [1]},
    )
    overview = plt.subplot2grid((2 if zooms else 1, max(1, len(zooms))), (0, 0), colspan=max(1, len(zooms)), fig=figure)
    for ax in axes[0]:
        ax.remove()
    overview.plot(positions, scores, lw=0.6, color="black")
    for e in elements:
        overview.axvspan(e.start, e.end, color=ROLE_COLOURS.get(e.role, "tab:blue"), alpha=0.25, lw=0)
    for role, colour in ROLE_COLOURS.items():
        overview.plot([], [], color=colour, alpha=0.5, lw=6, label=role)
    overview.legend(loc="upper left", fontsize=8, ncol=4, frameon=False)
    overview.set_xlim(start, end)
    overview.set_ylabel("abs(input x gradient)")
    overview.set_title(f"{args.h5.name}: {chrom}:{start + 1:,}-{end:,}", fontsize=10)

    for ax, element in zip(axes[1] if zooms else [], zooms):
        lo, hi = max(start, element.start - 150), min(end, element.end + 150)
        sl = slice(lo - start, hi - start)
        ax.bar(positions[sl], scores[sl], width=1.0, color=np.where(in_motif[sl], "tab:orange", "tab:blue"))
        ax.set_xlim(lo, hi)
        ax.set_title(f"{element.name} ({element.role}); orange: planted motif bases", fontsize=9)
        ax.set_ylabel("abs(input x gradient)")
    for element in zooms:
        print(element_summary(element, scores, start, in_motif))
    figure.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
