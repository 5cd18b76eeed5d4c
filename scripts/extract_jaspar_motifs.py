"""Write pgf_cli/pgf/sim/motifs.json: the JASPAR matrices the simulator plants.

Run once by a developer (needs `pip install pyjaspar`, a 57 MB wheel that is
not a dependency of pgf); the JSON it writes is committed, so simulation and
tests never need pyjaspar or the network.

    pip install pyjaspar && python -m scripts.extract_jaspar_motifs
"""

from __future__ import annotations

import json
from pathlib import Path

from pyjaspar import jaspardb

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "pgf_cli" / "pgf" / "sim" / "motifs.json"

# JASPAR matrix id -> role in the simulated grammar
# JASPAR matrix id -> role in the simulated grammar. Long matrices (12-20 bp) on purpose:
# a random genome matches a 7-9 bp matrix at planted-site strength every few kb, so short
# motifs would make planted and chance sites indistinguishable.
MOTIFS = {
    "MA0108.2": "promoter",  # TBP (TATA box, 15 bp)
    "MA0516.1": "promoter",  # SP2 (GC box, 15 bp)
    "MA0060.1": "promoter",  # NFYA (CCAAT box, 16 bp)
    "MA1128.1": "enhancer",  # FOSL1::JUN (AP-1, 13 bp)
    "MA0466.3": "enhancer",  # CEBPB (12 bp)
    "MA0148.3": "enhancer",  # FOXA1 (15 bp)
    "MA0046.3": "enhancer",  # HNF1A (13 bp)
    "MA0139.2": "insulator",  # CTCF (15 bp)
    "MA0138.3": "silencer",  # REST (20 bp)
}


def compact_json(source: dict, motifs: list[dict]) -> str:
    """JSON with one matrix row per line (readable in a diff)."""
    entries = []
    for motif in motifs:
        head = json.dumps({k: v for k, v in motif.items() if k != "counts"})[:-1]
        rows = ",\n".join("    " + json.dumps([int(c) if c.is_integer() else c for c in row]) for row in motif["counts"])
        entries.append(f"  {head}, \"counts\": [\n{rows}\n  ]}}")
    return "{\n \"source\": " + json.dumps(source) + ",\n \"motifs\": [\n" + ",\n".join(entries) + "\n ]\n}\n"


def main() -> None:
    db = jaspardb()
    motifs = []
    for matrix_id, role in MOTIFS.items():
        motif = db.fetch_motif_by_id(matrix_id)
        counts = [[float(motif.counts[base][i]) for base in "ACGT"] for i in range(motif.length)]
        motifs.append(
            {
                "id": matrix_id,
                "name": motif.name,
                "role": role,
                "consensus": str(motif.consensus),
                "counts": counts,  # (length, 4): A C G T counts per position
            }
        )
    source = {"database": "JASPAR", "release": getattr(db, "release", "unknown"), "collection": "CORE"}
    OUT.write_text(compact_json(source, motifs))
    print(f"wrote {len(motifs)} motifs to {OUT}")


if __name__ == "__main__":
    main()
