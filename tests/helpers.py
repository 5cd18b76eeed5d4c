"""Small test helpers shared by several test files (pytest puts tests/ on sys.path)."""

from pathlib import Path

import numpy as np


def random_sequence(length: int, seed: int) -> str:
    """Uniform random A/C/G/T of `length`, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("ACGT"), size=length))


def write_fasta(path: Path, records: dict[str, str], width: int = 60, description: str = "") -> Path:
    """Write `records` (name -> sequence) as FASTA with `width`-base lines."""
    with open(path, "w") as handle:
        for name, sequence in records.items():
            handle.write(f">{name}{' ' + description if description else ''}\n")
            for i in range(0, len(sequence), width):
                handle.write(sequence[i : i + width] + "\n")
    return path
