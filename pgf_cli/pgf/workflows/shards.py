"""`--shard K/N`: the K-th of N parts of a region list, balanced by base pairs.

The unit dealt out is the batch of the whole list (consecutive equal-length
regions computed together; see pgf.workflows.batch), so a shard computes
exactly the batches one run over the whole list would, and merged shards equal
that run bit for bit. Batches are dealt largest first (ties: earlier first) to
the shard with the fewest base pairs so far (ties: the lower shard), a
deterministic greedy balance; each shard keeps the list's order. Every region
is in exactly one shard, so N runs with --shard 1/N ... N/N cover the list once.
"""

from __future__ import annotations

import re

from pgf.errors import PgfUserError
from pgf.io.regions import Region


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8); K is 1-based and at most N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise PgfUserError(f"--shard {text!r}: expected K/N, e.g. 1/4 (the K-th of N shards, 1-based)")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1:
        raise PgfUserError(f"--shard {text}: N must be at least 1")
    if not 1 <= k <= n:
        raise PgfUserError(f"--shard {text}: K must be between 1 and N ({n})")
    return k, n


def shard_assignment(groups: list[list[Region]], count: int) -> list[int]:
    """The 0-based shard of every group of regions (a batch), balanced by base pairs."""
    sizes = [sum(len(region) for region in group) for group in groups]
    totals = [0] * count
    assignment = [0] * len(groups)
    for index in sorted(range(len(groups)), key=lambda i: (-sizes[i], i)):
        shard = min(range(count), key=lambda s: (totals[s], s))
        assignment[index] = shard
        totals[shard] += sizes[index]
    return assignment


def shard_batches(batches: list[list[Region]], k: int, n: int) -> list[tuple[int, list[Region]]]:
    """(index in the whole list, batch) of shard k (1-based) of n, in the list's order."""
    assignment = shard_assignment(batches, n)
    return [(index, batch) for index, (batch, shard) in enumerate(zip(batches, assignment)) if shard == k - 1]


def shard_regions(batches: list[list[Region]], k: int, n: int) -> list[Region]:
    """The regions of shard k (1-based) of n, in the list's order."""
    return [region for _, batch in shard_batches(batches, k, n) for region in batch]
