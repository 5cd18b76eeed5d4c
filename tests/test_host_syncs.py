"""No host synchronisation inside a sweep: every engine, on the CPU and the Triton kernels, issues
none of the operators that make a GPU wait for the host to read a value (`.item()`, `bool(t)`,
data-dependent shapes such as `nonzero`). A dispatch mode counts them, so the check runs without
a GPU (the Triton kernels under the interpreter). With CUDA the Triton cases run on the GPU under
torch's sync debug mode as well, which also catches synchronising copies and calls."""

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import build, onehot
from pgf.engine.tiled_engine import TiledEngine
from pgf.models.registry import load_model
from pgf.models.targets import parse_target

# operators whose result the host must read before it can go on
SYNCING = {"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::nonzero", "aten::masked_select",
           "aten::equal", "aten::allclose", "aten::unique_dim", "aten::_unique2", "aten::repeat_interleave"}


class HostReads(TorchDispatchMode):
    """Counts syncing operators by name."""

    def __init__(self):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in SYNCING:
            self.counts[func._schema.name] += 1
        return func(*args, **(kwargs or {}))


def test_the_counter_sees_host_reads():
    t = torch.arange(5.0)
    with HostReads() as reads:
        t.sum().item()
        bool(t[0] > 1)
        t.nonzero()
    assert reads.counts["aten::_local_scalar_dense"] == 2 and reads.counts["aten::nonzero"] == 1


def model_named(name: str):
    return load_model(name).model if name.startswith("random-test") else build(name).float()


# on the Triton interpreter (slow: a minute for the built-in model) a causal Mamba-1 LM (the causal
# stream) and the bidirectional RC-equivariant Mamba-2 model cover the engines and every kernel
@pytest.mark.parametrize("name, backend", [("random-test", "cpu"), ("random-test-mamba2", "cpu"), ("hf-mamba", "cpu"),
                                           ("hf-mamba", "triton"), ("random-test-mamba2", "triton")])
def test_no_engine_reads_a_value_back_inside_a_sweep(name, backend):
    device = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    model = model_named(name).to(device)
    x = onehot(40, dtype=torch.float32).to(device)  # two tiles (the first of two chunks), the second part-filled
    readout = parse_target("loglik" if model.lm_kind else "sum", model).readout([0])
    engine = TiledEngine(tile=32, backend=backend)
    directions = torch.randn(2, *x.shape, generator=torch.Generator().manual_seed(0)).to(device)
    if device == "cuda":
        engine.gradient(model, x, readout)  # kernels compiled, caches filled (the interpreter has none)
    debug = torch.cuda.get_sync_debug_mode() if device == "cuda" else None
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        with HostReads() as reads:
            engine.forward(model, x, readout)
            engine.gradient(model, x, readout)
            engine.tangent(model, x, directions, readout)
    finally:
        if debug is not None:
            torch.cuda.set_sync_debug_mode(debug)
    assert dict(reads.counts) == {}
