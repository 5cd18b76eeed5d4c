"""Targets: the scalar f whose gradient with respect to the one-hot input is computed.

Every target is a sum of per-position contributions, so any engine (whole
sequence or tile by tile) computes the same f:

    sum[:CHANNEL]            sum of one output channel over the region
    position:P[:CHANNEL]     that channel's output at genome position P (1-based)
    loglik                   language models: log-likelihood of the observed bases;
                             causal: sum_i log p(x_{i+1} | x_<=i), masked: sum_i log p(x_i | x)
                             (no mask token inserted); positions whose predicted base is N
                             contribute nothing. The observed bases select which
                             log-probability is taken; that selection is not differentiated.

CHANNEL is a channel name or a 0-based index into the model's default output;
it defaults to the first channel. A target window (chrom, start, end; 0-based
half-open, inside the region) restricts `sum` and `loglik` to those positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from pgf.engine.protocol import Readout
from pgf.errors import TargetError
from pgf.models.base import SequenceModel
from pgf.models.tokens import DnaVocabulary

TARGET_HELP = (
    "What to differentiate. 'sum[:CHANNEL]': the sum of one output channel over the region; "
    "'position:P[:CHANNEL]': that channel at genome position P (1-based, inside the region); "
    "'loglik' (language models): sum of log p(observed base) -- causal models predict each next base, "
    "masked models each base from the whole unmasked sequence. "
    "CHANNEL is a name or 0-based index (default: the first). Default: the model's own default "
    "(loglik for language models, sum for track models)."
)


@dataclass(frozen=True)
class Target:
    """A parsed target; `spec` is its canonical text (stored in outputs)."""

    kind: str  # "sum" | "position" | "loglik"
    output: str
    channel: int
    channel_name: str
    position: int | None = None  # 0-based genome coordinate for kind "position"
    lm_kind: str | None = None  # "causal" | "masked" for kind "loglik"
    vocabulary: DnaVocabulary | None = None
    window: tuple[str, int, int] | None = None  # (chrom, start, end), 0-based half-open

    @property
    def spec(self) -> str:
        if self.kind == "loglik":
            text = "loglik"
        elif self.kind == "position":
            return f"position:{self.position + 1}:{self.channel_name}"
        else:
            text = f"sum:{self.channel_name}"
        if self.window is not None:
            chrom, start, end = self.window
            text += f" over {chrom}:{start + 1}-{end}"
        return text

    def with_window(self, chrom: str, start: int, end: int) -> "Target":
        """This target restricted to genome positions [start, end) of `chrom`."""
        if self.kind == "position":
            raise TargetError("a target window applies to sum and loglik targets, not to position:P")
        return replace(self, window=(chrom, start, end))

    def check_region(self, start: int, end: int, label: str, chrom: str | None = None) -> None:
        """Raise `TargetError` when the target cannot be evaluated on this region."""
        if self.kind == "position" and not (start <= self.position < end):
            raise TargetError(f"target position {self.position + 1:,} lies outside region {label}")
        if self.window is not None:
            w_chrom, w_start, w_end = self.window
            if (chrom is not None and chrom != w_chrom) or w_start < start or w_end > end:
                raise TargetError(f"target window {w_chrom}:{w_start + 1:,}-{w_end:,} does not lie inside region {label}")

    def readout(self, region_starts: Sequence[int]) -> Readout:
        """The engine's readout of this target for rows starting at `region_starts`
        (0-based genome coordinates of each row's first base): per-position contributions
        whose sum over positions is f."""
        return TargetReadout(self, tuple(int(s) for s in region_starts))

    def contributions(
        self,
        outputs: dict[str, torch.Tensor],
        onehot: torch.Tensor,
        region_starts: Sequence[int],
        offset: int = 0,
    ) -> torch.Tensor:
        """Per-position contributions (b, T) for outputs at region positions [offset, offset + T).

        Summed over all positions of the region they give f for each batch row,
        whether the outputs come whole (offset 0) or tile by tile. `onehot`
        (b, L, 4) is the whole region's input; only `loglik` reads it, and only
        to select the observed bases (it is detached here).
        """
        if self.kind == "loglik":
            values = self._loglik(outputs[self.output], onehot.detach(), offset)
            return self._in_window(values, region_starts, offset)
        values = outputs[self.output][..., self.channel]
        if self.kind == "sum":
            return self._in_window(values, region_starts, offset)
        mask = torch.zeros_like(values)
        for row, start in enumerate(region_starts):
            index = self.position - start - offset
            if 0 <= index < values.shape[1]:
                mask[row, index] = 1.0
        return values * mask

    def _in_window(self, values: torch.Tensor, region_starts: Sequence[int], offset: int) -> torch.Tensor:
        if self.window is None:
            return values
        _, w_start, w_end = self.window
        mask = torch.zeros_like(values)
        for row, start in enumerate(region_starts):
            first = start + offset  # genome coordinate of values[:, 0]
            mask[row, max(w_start - first, 0) : max(w_end - first, 0)] = 1.0
        return values * mask

    def _loglik(self, logits: torch.Tensor, onehot: torch.Tensor, offset: int) -> torch.Tensor:
        log_probs = torch.log_softmax(logits, dim=-1)
        T = log_probs.shape[1]
        if self.lm_kind == "masked":  # position i scores base i
            predicted = onehot[:, offset : offset + T]
        else:  # causal: position i predicts base i+1; the region's last position predicts nothing
            predicted = onehot[:, offset + 1 : offset + T + 1]
            missing = T - predicted.shape[1]
            if missing:
                predicted = torch.cat([predicted, predicted.new_zeros(predicted.shape[0], missing, 4)], dim=1)
        ids = self.vocabulary.token_ids(predicted)
        observed = (predicted.sum(dim=-1) > 0).to(log_probs.dtype)
        return log_probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * observed


def _resolve_channel(model: SequenceModel, text: str | None, spec: str) -> tuple[str, int, str]:
    output = model.default_output
    names = model.output_channels[output]
    if text is None or text == "":
        return output, 0, names[0]
    if text in names:
        return output, names.index(text), text
    if text.isdigit() and int(text) < len(names):
        return output, int(text), names[int(text)]
    raise TargetError(
        f"target {spec!r}: unknown channel {text!r}; the model's {output!r} output has channels "
        + ", ".join(f"{i}:{n}" for i, n in enumerate(names))
    )


def parse_target(spec: str | None, model: SequenceModel) -> Target:
    """Parse a target spec (None: the model's default) against the model's outputs."""
    text = (spec if spec is not None else model.default_target).strip()
    kind, _, rest = text.partition(":")
    if text == "loglik":
        if model.lm_kind is None or model.vocabulary is None:
            raise TargetError("target 'loglik' needs a language model; this model has a track head (use sum or position:P)")
        return Target("loglik", model.default_output, -1, "", lm_kind=model.lm_kind, vocabulary=model.vocabulary)
    if kind == "sum":
        output, channel, name = _resolve_channel(model, rest or None, text)
        return Target("sum", output, channel, name)
    if kind == "position":
        position_text, _, channel_text = rest.partition(":")
        cleaned = position_text.replace(",", "")
        if not cleaned.isdigit() or int(cleaned) < 1:
            raise TargetError(f"target {text!r}: expected position:P with P a 1-based genome position")
        output, channel, name = _resolve_channel(model, channel_text or None, text)
        return Target("position", output, channel, name, position=int(cleaned) - 1)
    raise TargetError(f"unknown target {text!r}; expected loglik, sum[:CHANNEL] or position:P[:CHANNEL]")


@dataclass(frozen=True)
class TargetReadout(Readout):
    """`Target.readout`: a readout for rows starting at `region_starts`, which can be cut into row groups."""

    target: Target
    region_starts: tuple[int, ...]

    def __call__(self, outputs: dict[str, torch.Tensor], onehot: torch.Tensor, offset: int) -> torch.Tensor:
        return self.target.contributions(outputs, onehot, self.region_starts, offset)

    def rows(self, start: int, end: int) -> "TargetReadout":
        return TargetReadout(self.target, self.region_starts[start:end])
