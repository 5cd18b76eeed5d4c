"""`--shard K/N`: the K-th of N parts of a region list, balanced by base pairs.

Regions are dealt longest first (ties: earlier in the list first) to the shard
with the fewest base pairs so far (ties: the lower shard), a deterministic
greedy balance; each shard keeps its regions in the list's order. Every region
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


def shard_assignment(regions: list[Region], count: int) -> list[int]:
    """The 0-based shard of every region."""
    totals = [0] * count
    assignment = [0] * len(regions)
    for index in sorted(range(len(regions)), key=lambda i: (-len(regions[i]), i)):
        shard = min(range(count), key=lambda s: (totals[s], s))
        assignment[index] = shard
        totals[shard] += len(regions[index])
    return assignment


def shard_regions(regions: list[Region], k: int, n: int) -> list[Region]:
    """The regions of shard k (1-based) of n, in their original order."""
    assignment = shard_assignment(regions, n)
    return [region for region, shard in zip(regions, assignment) if shard == k - 1]
