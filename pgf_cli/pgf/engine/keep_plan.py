"""Which layers' inputs the adjoint sweep keeps from its forward pass, so that it fits in memory.

The reverse pass needs, for every layer, the stream entering it and what its scans kept (tile
start states, residuals). Kept for all layers, that is n_layers x L x width values: 19 GB for a
24-layer, 1,536-wide model at 131 kb. When that does not fit the memory budget, the layers are
cut into segments of `segment` consecutive layers, counted from the last: the forward pass keeps
only the input of each segment's first layer (a checkpoint), and whole only the last segment; the reverse pass, reaching
a segment, runs its layers forward again from the checkpoint (the same tiles, kernels and order,
so the same numbers) keeping them whole, then pulls back through them. Every layer outside the
last segment runs forward twice (n_layers - segment of them); peak memory is (segments - 1)
checkpoints + one whole segment.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_leaves

# the kept layers may take this share of the memory free when the gradient starts; the rest is the
# reverse pass's working set (cotangents, the current layer's tile temporaries) and the outputs
BUDGET_SHARE = 0.6


@dataclass(frozen=True)
class KeepPlan:
    """n_layers cut into segments of `segment` layers counted from the last layer (the first segment
    takes the remainder); segment >= n_layers: everything kept."""

    n_layers: int
    segment: int

    @property
    def keeps_all(self) -> bool:
        return self.segment >= self.n_layers

    @property
    def last_segment_start(self) -> int:
        """The first layer of the last segment, which the forward pass keeps whole."""
        return max(0, self.n_layers - self.segment)

    def kept_whole(self, index: int) -> bool:
        """Whether the forward pass keeps layer `index`'s input and scan states."""
        return index >= self.last_segment_start

    def checkpoint(self, index: int) -> bool:
        """Whether the forward pass keeps layer `index`'s input (its segment's first layer)."""
        return self.kept_whole(index) or index in self._starts()

    def _starts(self) -> list[int]:
        return sorted({max(0, start) for start in range(self.n_layers - self.segment, -self.segment, -self.segment)} | {0})

    def segments(self) -> list[range]:
        """The segments, first layer first."""
        starts = self._starts()
        return [range(s, e) for s, e in zip(starts, starts[1:] + [self.n_layers])]

    @property
    def recomputed_layers(self) -> int:
        """How many layers the reverse pass runs forward a second time: all but the last segment."""
        return self.last_segment_start


def plan_for(n_layers: int, input_bytes: int, whole_bytes: int, budget: float | None) -> KeepPlan:
    """The plan keeping the most layers whole (the fewest recomputed) within `budget` bytes, given
    one layer's input (`input_bytes`) and everything kept for one whole layer (`whole_bytes`);
    None: no limit. When even the smallest footprint exceeds the budget, the one nearest to it."""
    if budget is None or n_layers * whole_bytes <= budget or n_layers <= 1:  # one layer: nothing to cut
        return KeepPlan(n_layers, max(1, n_layers))

    def peak(segment: int) -> int:
        return (math.ceil(n_layers / segment) - 1) * input_bytes + segment * whole_bytes

    fitting = [k for k in range(1, n_layers) if peak(k) <= budget]
    return KeepPlan(n_layers, max(fitting) if fitting else min(range(1, n_layers), key=peak))


def bytes_held(*objects: object) -> int:
    """Bytes of the distinct storages behind the tensors in `objects` (nested lists, tuples, dicts
    and named tuples), each storage counted once however many views share it."""
    seen: dict[tuple[str, int], int] = {}
    for leaf in tree_leaves(list(objects)):
        if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta":
            storage = leaf.untyped_storage()
            seen[(str(leaf.device), storage.data_ptr())] = storage.nbytes()
    return sum(seen.values())


def host_memory_available() -> int | None:
    """Bytes of host memory available to new allocations (MemAvailable: free plus reclaimable
    cache), or None where the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget(device: torch.device, on_host: bool) -> float | None:
    """Bytes the kept layers may take where they live: host memory (CPU runs, or offloaded GPU runs),
    or the GPU's free memory; None where unknown."""
    if device.type == "cuda" and not on_host:
        free, _ = torch.cuda.mem_get_info(device)
        return BUDGET_SHARE * free
    available = host_memory_available()
    return None if available is None else BUDGET_SHARE * available
