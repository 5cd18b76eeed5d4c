"""Write sample_data/genome.fa (+ .fai) and sample_data/regions.bed from configs/sample_genome.json.

A placeholder genome for smoke tests: i.i.d. bases at the configured GC
content with an N run and soft-masked (lower-case) stretches, from a fixed
seed. It carries no biology; the simulated genome with planted regulatory
elements replaces it with the built-in model.

    python scripts/make_sample_genome.py [--out sample_data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyfaidx

ROOT = Path(__file__).resolve().parents[1]


def make_sequences(config: dict) -> dict[str, str]:
    rng = np.random.default_rng(config["seed"])
    gc = config["gc_content"]
    probabilities = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]  # A C G T
    sequences = {}
    for chrom, length in config["chromosomes"].items():
        bases = np.array(list("ACGT"))[rng.choice(4, size=length, p=probabilities)]
        sequences[chrom] = bases
    for chrom, start, end in config["soft_masked"]:
        sequences[chrom][start:end] = np.char.lower(sequences[chrom][start:end])
    for chrom, start, end in config["n_runs"]:
        sequences[chrom][start:end] = "N"
    return {chrom: "".join(bases) for chrom, bases in sequences.items()}


def write_fasta(sequences: dict[str, str], path: Path, width: int) -> None:
    with open(path, "w") as handle:
        for chrom, sequence in sequences.items():
            handle.write(f">{chrom}\n")
            for offset in range(0, len(sequence), width):
                handle.write(sequence[offset : offset + width] + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "sample_genome.json")
    parser.add_argument("--out", type=Path, default=ROOT / "sample_data")
    args = parser.parse_args()
    config = json.loads(args.config.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    fasta = args.out / "genome.fa"
    write_fasta(make_sequences(config), fasta, config["line_width"])
    Path(str(fasta) + ".fai").unlink(missing_ok=True)
    pyfaidx.Faidx(str(fasta)).close()  # builds genome.fa.fai
    with open(args.out / "regions.bed", "w") as handle:
        for chrom, start, end, name in config["regions"]:
            handle.write(f"{chrom}\t{start}\t{end}\t{name}\n")
    print(f"wrote {fasta}, {fasta}.fai and {args.out / 'regions.bed'}")


if __name__ == "__main__":
    main()
