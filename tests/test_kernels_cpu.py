"""The compiled CPU selective-scan kernels (numba) equal the PyTorch reference: outputs, every
input gradient (dA and dD included), tangents, through every registration path (autograd,
torch.func.jvp, vmap of jvp, vmap of the primal), and a state carried across calls.

Every buffer the wrappers allocate is filled with NaN first, so a missed write fails.
Kernels compile on first use and are cached on disk (numba cache=True)."""

import numpy as np
import pytest
import torch
from torch.func import jvp, vmap

pytest.importorskip("numba")

from pgf_kernels import (  # noqa: E402
    BACKENDS,
    cpu_unavailable_reason,
    kernel_backend,
    ops,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
)
from pgf_kernels import cpu_scan  # noqa: E402
from pgf_kernels.reference import selective_scan_loop  # noqa: E402

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
NAMES = ("x", "delta", "A", "B", "C", "D", "z", "h0")


@pytest.fixture(autouse=True)
def nan_scratch():
    previous, cpu_scan.NAN_FILL = cpu_scan.NAN_FILL, True
    yield
    cpu_scan.NAN_FILL = previous


def make_inputs(L, E, N, batch, dtype=torch.float64, seed=0, with_z=True, with_D=True, with_h0=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    x = r(batch, L, E)
    delta = torch.nn.functional.softplus(r(batch, L, E) - 1.0)
    A = -torch.exp(0.5 * r(E, N))
    B, C = r(batch, L, N), r(batch, L, N)
    D = r(E) if with_D else None
    z = r(batch, L, E) if with_z else None
    h0 = r(batch, E, N) if with_h0 else None
    return tuple(None if t is None else t.to(dtype) for t in (x, delta, A, B, C, D, z, h0))


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def cpu(*args, chunk=None):
    return selective_scan(*args, backend="cpu", chunk=chunk)


CASES = [
    # (L, E, N, batch, with_z, with_D, with_h0, chunk)
    (1, 3, 2, 1, True, True, True, None),
    (63, 5, 3, 2, True, True, True, 16),
    (63, 5, 3, 2, False, False, False, 16),
    (1000, 20, 4, 1, True, False, True, None),  # several channel blocks, 1000 % 128 != 0
    (1000, 4, 3, 2, False, True, False, 7),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[0]}-E{c[1]}-z{int(c[4])}-D{int(c[5])}-h{int(c[6])}-c{c[7]}")
def test_outputs_and_every_gradient_equal_the_reference_fp64(case):
    L, E, N, batch, with_z, with_D, with_h0, chunk = case
    inputs = make_inputs(L, E, N, batch, with_z=with_z, with_D=with_D, with_h0=with_h0, seed=L)
    leaves = [None if t is None else t.clone().requires_grad_(True) for t in inputs]
    y, h = cpu(*leaves, chunk=chunk)
    y_ref, h_ref = selective_scan_ref(*inputs)
    assert rel(y, y_ref) <= 1e-10 and rel(h, h_ref) <= 1e-10
    if L <= 63:
        y_loop, h_loop = selective_scan_loop(*inputs)
        assert rel(y, y_loop) <= 1e-10 and rel(h, h_loop) <= 1e-10

    g = torch.Generator().manual_seed(1)
    dy = torch.randn(y.shape, generator=g, dtype=y.dtype)
    dh = torch.randn(h.shape, generator=g, dtype=h.dtype)
    present = [(name, t) for name, t in zip(NAMES, leaves) if t is not None]
    grads = torch.autograd.grad((y, h), [t for _, t in present], (dy, dh))
    ref_leaves = [None if t is None else t.clone().requires_grad_(True) for t in inputs]
    y_r, h_r = selective_scan_ref(*ref_leaves)
    ref_present = [t for t in ref_leaves if t is not None]
    ref_grads = torch.autograd.grad((y_r, h_r), ref_present, (dy, dh))
    for (name, _), mine, ref in zip(present, grads, ref_grads):
        assert torch.isfinite(mine).all(), name
        assert mine.dtype == ref.dtype and mine.shape == ref.shape, name
        assert rel(mine, ref) <= 1e-10, name


def test_cotangent_on_h_last_only_and_on_y_only():
    inputs = make_inputs(100, 4, 3, 1, seed=3)
    for use_y, use_h in ((False, True), (True, False)):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        ref_leaves = [t.clone().requires_grad_(True) for t in inputs]
        y, h = cpu(*leaves, chunk=32)
        y_r, h_r = selective_scan_ref(*ref_leaves)
        loss = (y.sum() if use_y else 0) + (h.pow(2).sum() if use_h else 0)
        loss_r = (y_r.sum() if use_y else 0) + (h_r.pow(2).sum() if use_h else 0)
        mine = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
        for m, ref, leaf in zip(mine, torch.autograd.grad(loss_r, ref_leaves, allow_unused=True), leaves):
            ref = torch.zeros_like(leaf) if ref is None else ref
            assert (m == 0).all() if not ref.abs().max() else rel(m, ref) <= 1e-10


@pytest.mark.parametrize("L", [1, 63, 1000])
def test_state_carried_across_two_calls_equals_one_call(L):
    inputs = make_inputs(2 * L, 6, 3, 2, seed=L)
    x, delta, A, B, C, D, z, h0 = inputs
    y, h = cpu(*inputs)
    first = cpu(x[:, :L], delta[:, :L], A, B[:, :L], C[:, :L], D, z[:, :L], h0)
    second = cpu(x[:, L:], delta[:, L:], A, B[:, L:], C[:, L:], D, z[:, L:], first[1])
    assert rel(torch.cat([first[0], second[0]], 1), y) <= 1e-12
    assert rel(second[1], h) <= 1e-12


@pytest.mark.parametrize("L", [1, 63, 1000])
def test_jvp_equals_the_reference_jvp(L):
    inputs = make_inputs(L, 5, 3, 2, seed=L + 7)
    g = torch.Generator().manual_seed(2)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=t.dtype) for t in inputs)
    (y, h), (yd, hd) = jvp(lambda *a: cpu(*a, chunk=16), inputs, tangents)
    (y_r, h_r), (yd_r, hd_r) = jvp(selective_scan_ref, inputs, tangents)
    assert rel(y, y_r) <= 1e-10 and rel(h, h_r) <= 1e-10
    assert rel(yd, yd_r) <= 1e-10 and rel(hd, hd_r) <= 1e-10


def test_jvp_with_some_tangents_absent():
    inputs = make_inputs(50, 4, 3, 1, seed=5)
    x, delta, A, B, C, D, z, h0 = inputs
    g = torch.Generator().manual_seed(4)
    td = torch.randn(delta.shape, generator=g, dtype=delta.dtype)
    tC = torch.randn(C.shape, generator=g, dtype=C.dtype)
    f = lambda d, c: cpu(x, d, A, B, c, D, z, h0)  # noqa: E731
    f_ref = lambda d, c: selective_scan_ref(x, d, A, B, c, D, z, h0)  # noqa: E731
    _, (yd, hd) = jvp(f, (delta, C), (td, tC))
    _, (yd_r, hd_r) = jvp(f_ref, (delta, C), (td, tC))
    assert rel(yd, yd_r) <= 1e-10 and rel(hd, hd_r) <= 1e-10


@pytest.mark.parametrize("L", [1, 63, 1000])
@pytest.mark.parametrize("K", [1, 5])
def test_vmap_of_jvp_with_K_directions_equals_a_loop(L, K):
    """The tangent engine's pattern: one primal, K tangents (folded into the kernel's K)."""
    inputs = make_inputs(L, 5, 3, 1, seed=L + K, with_D=(K == 5))
    present = [i for i, t in enumerate(inputs) if t is not None and i not in (2, 5)]  # not A, D
    g = torch.Generator().manual_seed(K)
    tangents = [torch.randn(K, *inputs[i].shape, generator=g, dtype=torch.float64) for i in present]

    def f(*moving):
        args = list(inputs)
        for i, t in zip(present, moving):
            args[i] = t
        return args

    primals = tuple(inputs[i] for i in present)
    calls = []
    original = ops._CpuTangentFunction.forward

    def spy(*args):
        calls.append(args[8:16])
        return original(*args)

    ops._CpuTangentFunction.forward = staticmethod(spy)
    try:
        (y, h), (yd, hd) = vmap(lambda *t: jvp(lambda *m: cpu(*f(*m)), primals, t), out_dims=(None, 0))(*tangents)
    finally:
        ops._CpuTangentFunction.forward = staticmethod(original)
    assert len(calls) == 1 and next(t for t in calls[0] if t is not None).shape[0] == K  # one kernel call
    for k in range(K):
        _, (yd_r, hd_r) = jvp(lambda *m: selective_scan_ref(*f(*m)), primals, tuple(t[k] for t in tangents))
        assert rel(yd[k], yd_r) <= 1e-10 and rel(hd[k], hd_r) <= 1e-10


def test_jvp_with_parameter_tangents():
    """Tangents of A and D too (the kernel supports them)."""
    inputs = make_inputs(70, 4, 3, 2, seed=11)
    g = torch.Generator().manual_seed(12)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=t.dtype) for t in inputs)
    _, (yd, hd) = jvp(lambda *a: cpu(*a, chunk=16), inputs, tangents)
    _, (yd_r, hd_r) = jvp(selective_scan_ref, inputs, tangents)
    assert rel(yd, yd_r) <= 1e-10 and rel(hd, hd_r) <= 1e-10


def test_vmap_of_the_primal_folds_into_the_batch():
    inputs = make_inputs(40, 4, 3, 2, seed=13)
    x, delta, A, B, C, D, z, h0 = inputs
    V = 3
    xs = torch.randn(V, *x.shape, dtype=x.dtype)
    y, h = vmap(lambda xx: cpu(xx, delta, A, B, C, D, z, h0))(xs)
    for v in range(V):
        y_r, h_r = selective_scan_ref(xs[v], delta, A, B, C, D, z, h0)
        assert rel(y[v], y_r) <= 1e-10 and rel(h[v], h_r) <= 1e-10


@pytest.mark.parametrize("L", [1, 1000])
def test_fp32_within_tolerance(L):
    inputs64 = make_inputs(L, 20, 8, 1, seed=L)
    inputs = tuple(t.float() for t in inputs64)
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    y, h = cpu(*leaves)
    assert y.dtype == torch.float32 and h.dtype == torch.float32
    y_r, h_r = selective_scan_ref(*inputs64)
    assert rel(y.double(), y_r) <= TOL[torch.float32] and rel(h.double(), h_r) <= TOL[torch.float32]
    dy, dh = torch.ones_like(y), torch.ones_like(h)
    ref_leaves = [t.clone().requires_grad_(True) for t in inputs64]
    y64, h64 = selective_scan_ref(*ref_leaves)
    ref = torch.autograd.grad((y64, h64), ref_leaves, (dy.double(), dh.double()))
    for name, mine, r in zip(NAMES, torch.autograd.grad((y, h), leaves, (dy, dh)), ref):
        assert mine.dtype == torch.float32, name
        assert rel(mine.double(), r) <= 1e-4, name
    tangents = tuple(torch.randn_like(t) for t in inputs)
    _, (yd, _) = jvp(cpu, inputs, tangents)
    _, (yd_r, _) = jvp(selective_scan_ref, inputs64, tuple(t.double() for t in tangents))
    assert rel(yd.double(), yd_r) <= 1e-4


def test_nan_in_an_input_propagates():
    inputs = list(make_inputs(30, 3, 2, 1, seed=1))
    inputs[0] = inputs[0].clone()
    inputs[0][0, 10, 1] = float("nan")
    y, _ = cpu(*inputs)
    assert torch.isnan(y[0, 10:, 1]).all() and torch.isfinite(y[0, :10]).all()


def test_dispatch():
    assert "cpu" in BACKENDS
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    assert resolve_backend(x, A, None, "cpu") == "cpu"
    assert cpu_unavailable_reason(torch.device("cpu")) is None
    with kernel_backend("cpu"):
        assert resolve_backend(x, A, None) == "cpu"
    assert resolve_backend(x, A, None, "auto") == "cpu"
    with torch.enable_grad():  # a parameter gradient (training): auto keeps the reference
        assert resolve_backend(x, A.clone().requires_grad_(), None, "auto") == "reference"
        assert resolve_backend(x, A, torch.zeros(2).requires_grad_(), "auto") == "reference"
    assert "CPU tensors" in cpu_unavailable_reason(torch.device("meta"))


def test_missing_numba_is_a_clear_error(monkeypatch):
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    monkeypatch.setattr(ops, "_cpu_module", lambda: None)
    with pytest.raises(RuntimeError, match="numba is not installed"):
        resolve_backend(x, A, None, "cpu")
    assert resolve_backend(x, A, None, "auto") == "reference"


def test_the_model_runs_the_cpu_kernels_and_agrees_with_the_reference():
    from helpers import build, onehot

    model = build("caduceus-ps").double()
    seq = onehot(300, seed=2).double().requires_grad_(True)
    def total(outputs):
        values = outputs.values() if isinstance(outputs, dict) else [outputs]
        return torch.cat([v.reshape(-1) for v in values])

    with kernel_backend("reference"):
        ref = total(model(seq))
        (g_ref,) = torch.autograd.grad(ref.sum(), seq)
    with kernel_backend("cpu"):
        out = total(model(seq))
        (g,) = torch.autograd.grad(out.sum(), seq)
    assert rel(out, ref) <= 1e-10 and rel(g, g_ref) <= 1e-10


def test_a_cache_that_cannot_be_written_does_not_stop_a_kernel(monkeypatch):
    """A full disk or read-only cache folder: numba's cache save raises OSError after compiling;
    the kernel still runs, once, with the right result."""
    import errno

    import numba

    @numba.njit(cache=True)
    def add_one(values):
        for i in range(values.shape[0]):
            values[i] += 1.0

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(add_one._cache, "save_overload", no_space)
    values = np.zeros(3)
    with pytest.raises(OSError):
        add_one(np.zeros(3, dtype=np.float32))  # what a plain call does
    cpu_scan.run_compiled(add_one, values)
    assert values.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_exp_is_within_one_ulp_and_handles_the_edges(dtype):
    """The kernels' vectorisable exp (pgf_kernels.cpu_exp) against a long-double exp."""
    import numba

    from pgf_kernels.cpu_exp import fast_exp

    @numba.njit(fastmath=True)
    def exp_all(values, out):
        for i in range(values.shape[0]):
            out[i] = fast_exp(values[i])

    info = np.finfo(dtype)
    lo, hi = np.log(info.tiny), np.log(info.max)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(lo, hi, 200_000), rng.uniform(-2, 0, 50_000)]).astype(dtype)
    out = np.empty_like(values)
    exp_all(values, out)
    exact = np.exp(values.astype(np.longdouble))
    ulps = np.abs(out - exact) / np.spacing(exact.astype(dtype)).astype(np.longdouble)
    assert float(ulps.max()) <= 1.0
    edges = np.array([0.0, -0.0, lo - 1, -1e30, hi + 1, 1e30, np.inf, -np.inf, np.nan], dtype=dtype)
    out = np.empty_like(edges)
    exp_all(edges, out)
    assert out[:2].tolist() == [1.0, 1.0]
    assert out[2:4].tolist() == [0.0, 0.0] and np.isposinf(out[4:7]).all()
    assert out[7] == 0.0 and np.isnan(out[8])
