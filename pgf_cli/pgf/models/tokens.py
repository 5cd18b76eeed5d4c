"""DNA token vocabularies: how a model embeds one-hot input.

A token model embeds the one-hot input (L, 4) as

    onehot @ E[id(A), id(C), id(G), id(T)] + (1 - sum(onehot)) * E[id(N)]

which equals looking up the token of each base (and the N/UNK token for an
all-zero row), while keeping d f / d onehot defined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from pgf.errors import ModelError


@dataclass(frozen=True)
class DnaVocabulary:
    """Token ids of A, C, G, T and of the token an unknown base (N) maps to."""

    base_ids: tuple[int, int, int, int]
    n_id: int

    def embed(self, onehot: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(b, L, 4) one-hot -> (b, L, d) token embeddings from an embedding matrix (V, d)."""
        ids = torch.tensor(self.base_ids, device=weight.device)
        observed = onehot.sum(dim=-1, keepdim=True)
        return onehot.to(weight.dtype) @ weight[ids] + (1 - observed).to(weight.dtype) * weight[self.n_id]

    def token_ids(self, onehot: torch.Tensor) -> torch.Tensor:
        """(b, L) token ids of a one-hot batch (N for all-zero rows)."""
        ids = torch.tensor(self.base_ids, device=onehot.device)
        observed = onehot.sum(dim=-1) > 0
        return torch.where(observed, ids[onehot.argmax(dim=-1)], torch.full_like(observed, self.n_id, dtype=torch.long))

    def check(self, vocab_size: int, origin: str) -> None:
        for name, token in zip("ACGTN", (*self.base_ids, self.n_id)):
            if not 0 <= token < vocab_size:
                raise ModelError(f"{origin}: token id {token} of {name} is outside the vocabulary (size {vocab_size})")

    def to_string(self) -> str:
        return ",".join(f"{b}={t}" for b, t in zip("ACGTN", (*self.base_ids, self.n_id)))


CADUCEUS = DnaVocabulary((7, 8, 9, 10), 11)  # [CLS]0 [SEP]1 [BOS]2 [MASK]3 [PAD]4 [RESERVED]5 [UNK]6 A7 C8 G9 T10 N11
PLANT_CADUCEUS = DnaVocabulary((3, 4, 5, 6), 2)  # [PAD]0 [MASK]1 [UNK]2 a3 c4 g5 t6; N -> [UNK]

_VOCAB_ITEM = re.compile(r"^\s*([ACGTNacgtn])\s*[=:]\s*(\d+)\s*$")


def parse_vocabulary(text: str | dict) -> DnaVocabulary:
    """`A=7,C=8,G=9,T=10,N=11` (or a dict with keys A C G T N) -> DnaVocabulary."""
    if isinstance(text, dict):
        items = {str(k).upper(): v for k, v in text.items()}
    else:
        items = {}
        for part in text.split(","):
            match = _VOCAB_ITEM.match(part)
            if not match:
                raise ModelError(f"vocabulary {text!r}: expected A=ID,C=ID,G=ID,T=ID,N=ID")
            items[match.group(1).upper()] = int(match.group(2))
    missing = [b for b in "ACGTN" if b not in items]
    if missing:
        raise ModelError(f"vocabulary {text!r} lacks a token id for {', '.join(missing)}")
    try:
        ids = [int(items[b]) for b in "ACGTN"]
    except (TypeError, ValueError):
        raise ModelError(f"vocabulary {text!r}: token ids must be whole numbers") from None
    return DnaVocabulary(tuple(ids[:4]), ids[4])


def resolve_vocabulary(directory, config_data: dict, vocab: str | None, default: DnaVocabulary | None = None) -> DnaVocabulary:
    """Which token each base is: --vocab, else config.json's "pgf_vocab", else `default`."""
    if vocab is not None:
        return parse_vocabulary(vocab)
    if "pgf_vocab" in config_data:
        return parse_vocabulary(config_data["pgf_vocab"])
    if default is not None:
        return default
    raise ModelError(
        f"{directory}: which token is each base? add \"pgf_vocab\": {{\"A\": id, \"C\": id, \"G\": id, \"T\": id, \"N\": id}} "
        "to config.json or pass --vocab A=ID,C=ID,G=ID,T=ID,N=ID"
    )
