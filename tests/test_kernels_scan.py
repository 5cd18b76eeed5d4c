"""The selective scan, every backend against the PyTorch reference (fp64 unless a test is about
another dtype): outputs, input gradients, tangents, through every registration path (autograd,
torch.func.jvp, vmap of jvp, vmap of the primal) and inside the PGF engines; and which backend
runs (`backend=`; None and "auto": the "auto" rule).

* reference: the chunked PyTorch scan equals the step-by-step recurrence.
* cpu (numba): every input gradient (dA and dD included); compiled on first use, cached on disk.
* triton: on a machine with CUDA the compiled kernels on the GPU; without it Triton's
  interpreter on CPU (conftest.py sets TRITON_INTERPRET=1), which is slow, hence the small
  channel counts; those tests are `slow` on CPU (`pytest -m "not slow"` skips them there; CI
  runs them).

Every buffer the compiled kernels' wrappers allocate is filled with NaN first, so a missed write fails.
"""

import numpy as np
import pytest
import torch
from torch.func import jvp, vjp, vmap

from helpers import build, onehot
from pgf.engine import TiledEngine
from pgf.engine.protocol import whole_forward
from pgf.models.targets import parse_target
from pgf.workflows.effect import output_function
from pgf_kernels import (
    BACKENDS,
    backends,
    cpu_common,
    cpu_unavailable_reason,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
    selective_scan_saving,
    selective_scan_vjp,
    triton_unavailable_reason,
)
from pgf_kernels.scan import autograd, ops, selective_scan_loop
from pgf_kernels.scan import cpu as scan_cpu

try:
    from pgf_kernels import triton_common
    from pgf_kernels.scan import triton as triton_scan
except ImportError:  # Triton is a dependency on Linux only
    triton_common = triton_scan = None

NAMES = ("x", "delta", "A", "B", "C", "D", "z", "h0")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
RUNNABLE = triton_scan is not None and (DEVICE.type == "cuda" or triton_scan.interpreted())
needs_numba = pytest.mark.skipif(not cpu_common.available(), reason="numba is not installed")
needs_triton = pytest.mark.skipif(triton_scan is None, reason="Triton is not installed")
needs_kernels = pytest.mark.skipif(not RUNNABLE, reason="no Triton, or no CUDA and the Triton interpreter is off")


def triton_kernels(test):
    """A test of the Triton kernels: skipped where they cannot run, `slow` when interpreted (CPU)."""
    test = needs_kernels(test)
    return test if torch.cuda.is_available() else pytest.mark.slow(test)


@pytest.fixture(autouse=True)
def nan_scratch():
    """Every output and scratch buffer of the compiled kernels' wrappers starts as NaN."""
    modules = [m for m in (cpu_common, triton_common) if m is not None]
    previous = [m.NAN_FILL for m in modules]
    for m in modules:
        m.NAN_FILL = True
    yield
    for m, value in zip(modules, previous):
        m.NAN_FILL = value


# --------------------------------------------------------------------------------------------
# the reference


def ref_inputs(L, E=6, N=4, batch=2, seed=0, dtype=torch.float64, stiff=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, L, E, generator=g, dtype=dtype)
    delta = torch.rand(batch, L, E, generator=g, dtype=dtype) * (5.0 if stiff else 0.5) + 1e-4
    A = -torch.exp(torch.randn(E, N, generator=g, dtype=dtype)) * (10.0 if stiff else 1.0)
    B = torch.randn(batch, L, N, generator=g, dtype=dtype)
    C = torch.randn(batch, L, N, generator=g, dtype=dtype)
    D = torch.randn(E, generator=g, dtype=dtype)
    z = torch.randn(batch, L, E, generator=g, dtype=dtype)
    h0 = torch.randn(batch, E, N, generator=g, dtype=dtype)
    return x, delta, A, B, C, D, z, h0


@pytest.mark.parametrize("L", [1, 63, 200])
@pytest.mark.parametrize("chunk", [None, 1, 7, 64])
def test_reference_chunked_scan_equals_loop(L, chunk):
    x, delta, A, B, C, D, z, h0 = ref_inputs(L)
    y_ref, h_ref = selective_scan_ref(x, delta, A, B, C, D, z, h0, chunk=chunk)
    y_loop, h_loop = selective_scan_loop(x, delta, A, B, C, D, z, h0)
    torch.testing.assert_close(y_ref, y_loop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_ref, h_loop, rtol=1e-12, atol=1e-12)


def test_reference_stiff_decays_stay_finite_and_exact():
    # delta*|A| reaches ~50+ per step: a cumulative exp(-cumsum) would overflow
    x, delta, A, B, C, D, z, h0 = ref_inputs(300, stiff=True, seed=3)
    assert (delta[..., None] * A.abs()).max() > 50
    y_ref, h_ref = selective_scan_ref(x.float(), delta.float(), A.float(), B.float(), C.float(), D.float(), z.float(), h0.float(), chunk=64)
    y_loop, _ = selective_scan_loop(x, delta, A, B, C, D, z, h0)
    assert torch.isfinite(y_ref).all() and torch.isfinite(h_ref).all()
    torch.testing.assert_close(y_ref.double(), y_loop, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("split", [1, 17, 62])
def test_reference_state_carry_composes(split):
    """Scanning [0, k) then [k, L) from the carried state equals one scan over [0, L)."""
    x, delta, A, B, C, D, z, h0 = ref_inputs(63, seed=1)
    y_all, h_all = selective_scan_ref(x, delta, A, B, C, D, z, h0)
    y1, h1 = selective_scan_ref(x[:, :split], delta[:, :split], A, B[:, :split], C[:, :split], D, z[:, :split], h0)
    y2, h2 = selective_scan_ref(x[:, split:], delta[:, split:], A, B[:, split:], C[:, split:], D, z[:, split:], h1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_all, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h2, h_all, rtol=1e-12, atol=1e-12)


def test_reference_gradients_equal_loop_gradients():
    inputs = [t.clone().requires_grad_(True) for t in ref_inputs(40, seed=2)]
    y, h = selective_scan_ref(*inputs, chunk=7)
    weights_y, weights_h = torch.randn_like(y), torch.randn_like(h)
    grads_ref = torch.autograd.grad((y * weights_y).sum() + (h * weights_h).sum(), inputs)
    y2, h2 = selective_scan_loop(*inputs)
    grads_loop = torch.autograd.grad((y2 * weights_y).sum() + (h2 * weights_h).sum(), inputs)
    for name, a, b in zip("x delta A B C D z h0".split(), grads_ref, grads_loop):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


def test_reference_zero_length_returns_initial_state():
    x, delta, A, B, C, D, z, h0 = ref_inputs(0)
    y, h = selective_scan_ref(x, delta, A, B, C, D, z, h0)
    assert y.shape == (2, 0, 6)
    torch.testing.assert_close(h, h0)


# --------------------------------------------------------------------------------------------
# the compiled CPU kernels (numba)

CPU_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def cpu_inputs(L, E, N, batch, dtype=torch.float64, seed=0, with_z=True, with_D=True, with_h0=True):
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


CPU_CASES = [
    # (L, E, N, batch, with_z, with_D, with_h0, chunk)
    (1, 3, 2, 1, True, True, True, None),
    (63, 5, 3, 2, True, True, True, 16),
    (63, 5, 3, 2, False, False, False, 16),
    (1000, 20, 4, 1, True, False, True, None),  # several channel blocks, 1000 % 128 != 0
    (1000, 4, 3, 2, False, True, False, 7),
    (300, 150, 3, 1, True, True, True, 64),  # full 64-channel blocks and a 22-channel remainder on any thread count
]


@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: f"L{c[0]}-E{c[1]}-z{int(c[4])}-D{int(c[5])}-h{int(c[6])}-c{c[7]}")
@needs_numba
def test_cpu_outputs_and_every_gradient_equal_the_reference_fp64(case):
    L, E, N, batch, with_z, with_D, with_h0, chunk = case
    inputs = cpu_inputs(L, E, N, batch, with_z=with_z, with_D=with_D, with_h0=with_h0, seed=L)
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


@needs_numba
def test_cpu_cotangent_on_h_last_only_and_on_y_only():
    inputs = cpu_inputs(100, 4, 3, 1, seed=3)
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
@needs_numba
def test_cpu_state_carried_across_two_calls_equals_one_call(L):
    inputs = cpu_inputs(2 * L, 6, 3, 2, seed=L)
    x, delta, A, B, C, D, z, h0 = inputs
    y, h = cpu(*inputs)
    first = cpu(x[:, :L], delta[:, :L], A, B[:, :L], C[:, :L], D, z[:, :L], h0)
    second = cpu(x[:, L:], delta[:, L:], A, B[:, L:], C[:, L:], D, z[:, L:], first[1])
    assert rel(torch.cat([first[0], second[0]], 1), y) <= 1e-12
    assert rel(second[1], h) <= 1e-12


@pytest.mark.parametrize("L", [1, 63, 1000])
@needs_numba
def test_cpu_jvp_equals_the_reference_jvp(L):
    inputs = cpu_inputs(L, 5, 3, 2, seed=L + 7)
    g = torch.Generator().manual_seed(2)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=t.dtype) for t in inputs)
    (y, h), (yd, hd) = jvp(lambda *a: cpu(*a, chunk=16), inputs, tangents)
    (y_r, h_r), (yd_r, hd_r) = jvp(selective_scan_ref, inputs, tangents)
    assert rel(y, y_r) <= 1e-10 and rel(h, h_r) <= 1e-10
    assert rel(yd, yd_r) <= 1e-10 and rel(hd, hd_r) <= 1e-10


@needs_numba
def test_cpu_jvp_with_some_tangents_absent():
    inputs = cpu_inputs(50, 4, 3, 1, seed=5)
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
@needs_numba
def test_cpu_vmap_of_jvp_with_K_directions_equals_a_loop(L, K):
    """The tangent engine's pattern: one primal, K tangents (folded into the kernel's K)."""
    inputs = cpu_inputs(L, 5, 3, 1, seed=L + K, with_D=(K == 5))
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
    original = autograd.CpuTangentFunction.forward

    def spy(*args):
        calls.append(args[8:16])
        return original(*args)

    autograd.CpuTangentFunction.forward = staticmethod(spy)
    try:
        (y, h), (yd, hd) = vmap(lambda *t: jvp(lambda *m: cpu(*f(*m)), primals, t), out_dims=(None, 0))(*tangents)
    finally:
        autograd.CpuTangentFunction.forward = staticmethod(original)
    assert len(calls) == 1 and next(t for t in calls[0] if t is not None).shape[0] == K  # one kernel call
    for k in range(K):
        _, (yd_r, hd_r) = jvp(lambda *m: selective_scan_ref(*f(*m)), primals, tuple(t[k] for t in tangents))
        assert rel(yd[k], yd_r) <= 1e-10 and rel(hd[k], hd_r) <= 1e-10


@pytest.mark.parametrize("L, E, N, batch", [(70, 4, 3, 2), (300, 150, 3, 1)], ids=["small", "64-channel-blocks"])
@needs_numba
def test_cpu_jvp_with_parameter_tangents(L, E, N, batch):
    """Tangents of A and D too (the kernel supports them); positions beyond one span of the
    kernel's primal-then-directions loop, full channel blocks and a remainder."""
    inputs = cpu_inputs(L, E, N, batch, seed=11)
    g = torch.Generator().manual_seed(12)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=t.dtype) for t in inputs)
    _, (yd, hd) = jvp(lambda *a: cpu(*a, chunk=16), inputs, tangents)
    _, (yd_r, hd_r) = jvp(selective_scan_ref, inputs, tangents)
    assert rel(yd, yd_r) <= 1e-10 and rel(hd, hd_r) <= 1e-10


@needs_numba
def test_cpu_vmap_of_the_primal_folds_into_the_batch():
    inputs = cpu_inputs(40, 4, 3, 2, seed=13)
    x, delta, A, B, C, D, z, h0 = inputs
    V = 3
    xs = torch.randn(V, *x.shape, dtype=x.dtype)
    y, h = vmap(lambda xx: cpu(xx, delta, A, B, C, D, z, h0))(xs)
    for v in range(V):
        y_r, h_r = selective_scan_ref(xs[v], delta, A, B, C, D, z, h0)
        assert rel(y[v], y_r) <= 1e-10 and rel(h[v], h_r) <= 1e-10


@pytest.mark.parametrize("L", [1, 1000])
@needs_numba
def test_cpu_fp32_within_tolerance(L):
    inputs64 = cpu_inputs(L, 20, 8, 1, seed=L)
    inputs = tuple(t.float() for t in inputs64)
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    y, h = cpu(*leaves)
    assert y.dtype == torch.float32 and h.dtype == torch.float32
    y_r, h_r = selective_scan_ref(*inputs64)
    assert rel(y.double(), y_r) <= CPU_TOL[torch.float32] and rel(h.double(), h_r) <= CPU_TOL[torch.float32]
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


@needs_numba
def test_cpu_nan_in_an_input_propagates():
    inputs = list(cpu_inputs(30, 3, 2, 1, seed=1))
    inputs[0] = inputs[0].clone()
    inputs[0][0, 10, 1] = float("nan")
    y, _ = cpu(*inputs)
    assert torch.isnan(y[0, 10:, 1]).all() and torch.isfinite(y[0, :10]).all()


@needs_numba
def test_cpu_the_model_runs_the_cpu_kernels_and_agrees_with_the_reference():
    model = build("caduceus-ps").double()
    seq = onehot(300, seed=2).double().requires_grad_(True)
    def total(outputs):
        values = outputs.values() if isinstance(outputs, dict) else [outputs]
        return torch.cat([v.reshape(-1) for v in values])

    ref = total(whole_forward(model, seq, "reference"))
    (g_ref,) = torch.autograd.grad(ref.sum(), seq)
    out = total(whole_forward(model, seq, "cpu"))
    (g,) = torch.autograd.grad(out.sum(), seq)
    assert rel(out, ref) <= 1e-10 and rel(g, g_ref) <= 1e-10


@needs_numba
def test_cpu_a_cache_that_cannot_be_written_does_not_stop_a_kernel(monkeypatch):
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
    cpu_common.run_compiled(add_one, values)
    assert values.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@needs_numba
def test_cpu_fast_exp_is_within_one_ulp_and_handles_the_edges(dtype):
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


# --------------------------------------------------------------------------------------------
# the Triton kernels

TRITON_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
MANY_BLOCKS = {"fwd_e": 2, "bwd_e": 2, "bwd_groups": 2, "tan_e": 2, "k": 2, "carry_c": 2, "carry_e": 2}


def triton_inputs(L, E, N, batch, dtype=torch.float64, seed=0, decay="normal", with_z=True, with_D=True, with_h0=True):
    """(x, delta, A, B, C, D, z, h0) on DEVICE; decay "stiff" reaches delta*|A| = 50 per step,
    "tiny" keeps it near 1e-4."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    x = r(batch, L, E)
    if decay == "stiff":
        delta = 0.5 + 4.5 * torch.rand(batch, L, E, generator=g, dtype=torch.float64)
        A = -torch.linspace(0.5, 10.0, E * N, dtype=torch.float64).reshape(E, N)
        delta[:, :: max(1, L // 7)] = 5.0  # some steps at exactly delta*|A| = 50
    elif decay == "tiny":
        delta = 1e-4 * (1 + torch.rand(batch, L, E, generator=g, dtype=torch.float64))
        A = -0.5 - torch.rand(E, N, generator=g, dtype=torch.float64)
    else:
        delta = 0.05 + 0.5 * torch.rand(batch, L, E, generator=g, dtype=torch.float64)
        A = -torch.exp(0.5 * r(E, N))
    inputs = [x, delta, A, r(batch, L, N), r(batch, L, N), r(E) if with_D else None, r(batch, L, E) if with_z else None,
              r(batch, E, N) if with_h0 else None]
    return [None if t is None else t.to(DEVICE, dtype) for t in inputs]


def rel_checked(got, expected):
    """Max abs difference relative to the max magnitude of `expected`."""
    got, expected = got.detach().double(), expected.detach().double()
    assert torch.isfinite(got).all(), "non-finite values (NaN: an unwritten output)"
    return float((got - expected).abs().max() / expected.abs().max().clamp(min=1e-300))


def reference_vjp(inputs, dy, dh):
    """Input gradients of <y, dy> + <h_last, dh> by autograd through the fp64 reference."""
    leaves = [None if t is None else t.detach().double().requires_grad_(True) for t in inputs]
    y, h = selective_scan_ref(*leaves)
    wanted = [t for i, t in enumerate(leaves) if t is not None and NAMES[i] not in ("A", "D")]
    grads = torch.autograd.grad((y * dy.double()).sum() + (h * dh.double()).sum(), wanted)
    it = iter(grads)
    return {NAMES[i]: next(it) for i, t in enumerate(leaves) if t is not None and NAMES[i] not in ("A", "D")}


# cases: (L, E, N, batch, chunk, block overrides); chunks never divide L. In the interpreter each
# program (chunk x channel block x batch row) is a pass of Python over its block, so the long cases
# keep their structure at lengths it can afford (test_triton_cases_keep_their_structure):
#  * L300: 64-position chunks (BLOCK_T 64) on the default blocks, channels masked (E 3 of 4), a
#    part-filled last chunk, 5 chunks in a carry block of 8 (rows past the last chunk masked).
#  * L263: more chunks (66) than the interpreter's carry block holds (64; 16 on CUDA), so the
#    chunk carry runs several blocks in sequence, the last part-filled, on the default blocks.
TRITON_CASES = [
    (1, 6, 4, 2, 16, None),
    (63, 6, 4, 2, 12, MANY_BLOCKS),
    (300, 3, 2, 2, 64, None),
    (263, 2, 2, 1, 4, None),
]
TRITON_CASE_IDS = [f"L{c[0]}" for c in TRITON_CASES]


@needs_triton
def test_triton_cases_keep_their_structure():
    """The cases above still reach what they are there for, on this device's default blocks."""
    from pgf_kernels.scan.triton_util import config

    for L, E, N, batch, chunk, blocks in TRITON_CASES[2:]:
        n_chunks = -(-L // chunk)
        cfg = config(DEVICE, E, N, chunk, n_chunks, blocks=blocks)
        assert blocks is None and L % chunk and n_chunks > 1, L
        assert n_chunks % cfg["carry_c"] and cfg["fwd_e"] >= E, L  # a carry block with masked rows
    L, E, N, batch, chunk, _ = TRITON_CASES[3]
    assert -(-L // chunk) > config(DEVICE, E, N, chunk, -(-L // chunk))["carry_c"]  # several carry blocks
    L, E, N, batch, chunk, _ = TRITON_CASES[2]
    assert chunk == 64 and E & (E - 1)  # full-size chunk blocks, masked channels


# --------------------------------------------------------------------------------------------
# the kernels, called directly


@triton_kernels
@pytest.mark.parametrize("case", TRITON_CASES, ids=TRITON_CASE_IDS)
@pytest.mark.parametrize("full", [True, False], ids=["z-D-h0", "bare"])
def test_triton_forward_kernel(case, full):
    L, E, N, batch, chunk, blocks = case
    inputs = triton_inputs(L, E, N, batch, with_z=full, with_D=full, with_h0=full)
    y, h, starts = triton_scan.scan_forward(*inputs, chunk=chunk, blocks=blocks)
    y_ref, h_ref = selective_scan_ref(*inputs)
    assert rel_checked(y, y_ref) <= 1e-10 and rel_checked(h, h_ref) <= 1e-10
    assert starts.shape == (batch, -(-L // chunk), E, N)
    if L > chunk:  # the saved start of chunk 1 is the state after the first chunk
        head = [t if t is None or NAMES[i] in ("A", "D", "h0") else t[:, :chunk] for i, t in enumerate(inputs)]
        assert rel_checked(starts[:, 1], selective_scan_ref(*head)[1]) <= 1e-10


@triton_kernels
@pytest.mark.parametrize("case", TRITON_CASES, ids=TRITON_CASE_IDS)
@pytest.mark.parametrize("full", [True, False], ids=["z-D-h0", "bare"])
def test_triton_backward_kernel(case, full):
    L, E, N, batch, chunk, blocks = case
    inputs = triton_inputs(L, E, N, batch, with_z=full, with_D=full, with_h0=full, seed=1)
    g = torch.Generator().manual_seed(2)
    dy = torch.randn(batch, L, E, generator=g, dtype=torch.float64).to(DEVICE)
    dh = torch.randn(batch, E, N, generator=g, dtype=torch.float64).to(DEVICE)
    x, delta, A, B, C, D, z, h0 = inputs
    _, _, starts = triton_scan.scan_forward(*inputs, chunk=chunk, blocks=blocks)
    dx, ddelta, dB, dC, dz, dh0 = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh, chunk=chunk, blocks=blocks)
    if not full:  # dh0 is returned even without h0: the cotangent of the zero start state
        assert dz is None
        inputs[7] = torch.zeros(batch, E, N, dtype=torch.float64, device=DEVICE)
    expected = reference_vjp(inputs, dy, dh)
    got = {"x": dx, "delta": ddelta, "B": dB, "C": dC, "z": dz, "h0": dh0}
    for name, value in expected.items():
        assert rel_checked(got[name], value) <= 1e-10, name


TRITON_TANGENT_CASES = [
    (TRITON_CASES[0], 3),
    (TRITON_CASES[1], 1),
    (TRITON_CASES[1], 3),
    (TRITON_CASES[2], 3),
    (TRITON_CASES[3], 1),
]


@triton_kernels
@pytest.mark.parametrize("case, K", TRITON_TANGENT_CASES, ids=[f"L{c[0]}-K{k}" for c, k in TRITON_TANGENT_CASES])
def test_triton_tangent_kernel(case, K):
    """Tangents of every input (A and D included), K directions sharing one primal."""
    L, E, N, batch, chunk, blocks = case
    inputs = triton_inputs(L, E, N, batch, seed=3)
    g = torch.Generator().manual_seed(4)
    tangents = [torch.randn(K, *t.shape, generator=g, dtype=torch.float64).to(DEVICE) for t in inputs]
    y, h, y_t, h_t = triton_scan.scan_tangent(*inputs, tangents, chunk=chunk, blocks=blocks)
    y_ref, h_ref = selective_scan_ref(*inputs)
    assert rel_checked(y, y_ref) <= 1e-10 and rel_checked(h, h_ref) <= 1e-10
    for k in range(K):
        _, (y_t_ref, h_t_ref) = jvp(selective_scan_ref, tuple(inputs), tuple(t[k] for t in tangents))
        assert rel_checked(y_t[k], y_t_ref) <= 1e-10 and rel_checked(h_t[k], h_t_ref) <= 1e-10


@triton_kernels
def test_triton_tangent_kernel_partial_tangents_and_no_z():
    """Only x' and h0' (the engine's pattern), no z, no D; and only delta' with no h0."""
    inputs = triton_inputs(63, 5, 3, 2, seed=5, with_z=False, with_D=False)
    g = torch.Generator().manual_seed(6)
    xt = torch.randn(2, *inputs[0].shape, generator=g, dtype=torch.float64).to(DEVICE)
    ht = torch.randn(2, *inputs[7].shape, generator=g, dtype=torch.float64).to(DEVICE)
    tangents = (xt, None, None, None, None, None, None, ht)
    _, _, y_t, h_t = triton_scan.scan_tangent(*inputs, tangents, chunk=16, write_primal=False)
    for k in range(2):
        full = [xt[k], torch.zeros_like(inputs[1]), torch.zeros_like(inputs[2]), torch.zeros_like(inputs[3]),
                torch.zeros_like(inputs[4]), None, None, ht[k]]
        _, (y_t_ref, h_t_ref) = jvp(lambda x, d, a, b, c, h: selective_scan_ref(x, d, a, b, c, None, None, h),
                                    tuple(inputs[i] for i in (0, 1, 2, 3, 4, 7)), tuple(full[i] for i in (0, 1, 2, 3, 4, 7)))
        assert rel_checked(y_t[k], y_t_ref) <= 1e-10 and rel_checked(h_t[k], h_t_ref) <= 1e-10
    no_h0 = inputs[:7] + [None]
    dt = torch.randn(1, *inputs[1].shape, generator=g, dtype=torch.float64).to(DEVICE)
    _, _, y_t, h_t = triton_scan.scan_tangent(*no_h0, (None, dt, None, None, None, None, None, None), chunk=16)
    _, (y_t_ref, h_t_ref) = jvp(lambda d: selective_scan_ref(*no_h0[:1], d, *no_h0[2:]), (inputs[1],), (dt[0],))
    assert rel_checked(y_t[0], y_t_ref) <= 1e-10 and rel_checked(h_t[0], h_t_ref) <= 1e-10


@triton_kernels
@pytest.mark.parametrize("decay", ["stiff", "tiny"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_triton_stiff_and_tiny_decays(decay, dtype):
    """delta*|A| up to 50 per step (cumulative decays far beyond exp's range) and ~1e-4:
    forward, adjoint and tangent stay finite and equal the fp64 reference."""
    inputs = triton_inputs(150, 4, 4, 1, dtype=dtype, seed=7, decay=decay)  # 64-position chunks: 3, the last part-filled
    if decay == "stiff":
        assert float((inputs[1][..., None] * inputs[2].abs()).max()) >= 49.9
    x, delta, A, B, C, D, z, h0 = inputs
    y, h, starts = triton_scan.scan_forward(*inputs, chunk=64)
    y_ref, h_ref = selective_scan_ref(*[t.double() for t in inputs])
    assert rel_checked(y, y_ref) <= TRITON_TOL[dtype] and rel_checked(h, h_ref) <= TRITON_TOL[dtype]
    g = torch.Generator().manual_seed(8)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(DEVICE)
    dh = torch.randn(h.shape, generator=g, dtype=torch.float64).to(DEVICE)
    dx, ddelta, dB, dC, dz, dh0 = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy.to(dtype), dh.to(dtype), chunk=64)
    expected = reference_vjp(inputs, dy, dh)
    for name, value in zip(("x", "delta", "B", "C", "z", "h0"), (dx, ddelta, dB, dC, dz, dh0)):
        assert rel_checked(value, expected[name]) <= TRITON_TOL[dtype], name
    tangents = [torch.randn(1, *t.shape, generator=g, dtype=torch.float64).to(DEVICE, dtype) for t in inputs]
    tangents[2] = tangents[5] = None
    _, _, y_t, h_t = triton_scan.scan_tangent(*inputs, tangents, chunk=64)
    keep = (0, 1, 3, 4, 6, 7)
    _, (y_t_ref, h_t_ref) = jvp(
        lambda x, d, b, c, zz, hh: selective_scan_ref(x, d, A.double(), b, c, D.double(), zz, hh),
        tuple(inputs[i].double() for i in keep), tuple(tangents[i][0].double() for i in keep),
    )
    assert rel_checked(y_t[0], y_t_ref) <= TRITON_TOL[dtype] and rel_checked(h_t[0], h_t_ref) <= TRITON_TOL[dtype]


@triton_kernels
def test_triton_bf16_inputs():
    """bf16 activations, fp32 A, D and state: fp32 arithmetic inside, outputs in bf16
    (one bf16 rounding off the fp32 reference; the interpreter truncates)."""
    inputs = triton_inputs(150, 4, 4, 2, dtype=torch.float32, seed=9)
    for i in (0, 1, 3, 4, 6):
        inputs[i] = inputs[i].to(torch.bfloat16)
    x, delta, A, B, C, D, z, h0 = inputs
    y, h, starts = triton_scan.scan_forward(*inputs, chunk=32)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32
    y_ref, h_ref = selective_scan_ref(*[t.double() for t in inputs])
    assert rel_checked(y, y_ref) <= 1e-2 and rel_checked(h, h_ref) <= 1e-5
    g = torch.Generator().manual_seed(10)
    dy = torch.randn(y.shape, generator=g).to(DEVICE, torch.bfloat16)
    dh = torch.randn(h.shape, generator=g).to(DEVICE)
    grads = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh, chunk=32)
    expected = reference_vjp(inputs, dy, dh)
    for name, value, source in zip(("x", "delta", "B", "C", "z", "h0"), grads, (x, delta, B, C, z, h0)):
        assert value.dtype == source.dtype
        assert rel_checked(value, expected[name]) <= 1e-2, name
    tangents = (torch.randn(2, *x.shape, generator=g).to(DEVICE, torch.bfloat16), None, None, None, None, None, None,
                torch.randn(2, *h0.shape, generator=g).to(DEVICE))
    _, _, y_t, h_t = triton_scan.scan_tangent(*inputs, tangents, chunk=32)
    assert y_t.dtype == torch.bfloat16 and h_t.dtype == torch.float32
    for k in range(2):
        _, (y_t_ref, h_t_ref) = jvp(lambda xx, hh: selective_scan_ref(xx, *[t.double() for t in inputs[1:7]], hh),
                                    (x.double(), h0.double()), (tangents[0][k].double(), tangents[7][k].double()))
        assert rel_checked(y_t[k], y_t_ref) <= 1e-2 and rel_checked(h_t[k], h_t_ref) <= 1e-5


@triton_kernels
def test_triton_backward_is_deterministic():
    """Two adjoint runs are bit-identical (dB, dC reduced over channels without atomics)."""
    # 5 chunks (the last part-filled) in carry blocks of 2, 3 channel blocks in 2 groups
    inputs = triton_inputs(75, 6, 4, 2, dtype=torch.float32, seed=11)
    x, delta, A, B, C, D, z, h0 = inputs
    _, _, starts = triton_scan.scan_forward(*inputs, chunk=16, blocks={"fwd_e": 2})
    dy, dh = torch.randn(2, 75, 6, device=DEVICE), torch.randn(2, 6, 4, device=DEVICE)
    blocks = {"bwd_e": 2, "bwd_groups": 2, "carry_c": 2}
    first = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh, chunk=16, blocks=blocks)
    second = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh, chunk=16, blocks=blocks)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@triton_kernels
def test_triton_chunk_starts_must_match_chunk():
    inputs = triton_inputs(40, 2, 2, 1)
    x, delta, A, B, C, D, z, h0 = inputs
    _, _, starts = triton_scan.scan_forward(*inputs, chunk=16)
    with pytest.raises(ValueError, match="chunk starts"):
        triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, None, None, chunk=8)


# --------------------------------------------------------------------------------------------
# registration: autograd, torch.func.jvp, vmap


def triton_scan_fn(*inputs, chunk=16):
    return selective_scan(*inputs, chunk=chunk, backend="triton")


@triton_kernels
@pytest.mark.parametrize("L, dtype, full", [(63, torch.float64, True), (63, torch.float64, False), (300, torch.float32, True)],
                         ids=["L63-fp64", "L63-fp64-bare", "L300-fp32"])
def test_triton_autograd_matches_reference(L, dtype, full):
    inputs = triton_inputs(L, 4, 3, 2, dtype=dtype, seed=12, with_z=full, with_D=full, with_h0=full)
    leaves = [None if t is None else t.clone().requires_grad_(NAMES[i] not in ("A", "D")) for i, t in enumerate(inputs)]
    y, h = triton_scan_fn(*leaves)
    g = torch.Generator().manual_seed(13)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(DEVICE)
    dh = torch.randn(h.shape, generator=g, dtype=torch.float64).to(DEVICE)
    wanted = [t for i, t in enumerate(leaves) if t is not None and t.requires_grad]
    grads = torch.autograd.grad((y.double() * dy).sum() + (h.double() * dh).sum(), wanted)
    expected = reference_vjp(inputs, dy, dh)
    for name, grad in zip([NAMES[i] for i, t in enumerate(leaves) if t is not None and t.requires_grad], grads):
        assert rel_checked(grad, expected[name]) <= TRITON_TOL[dtype], name
    y_ref, h_ref = selective_scan_ref(*[None if t is None else t.double() for t in inputs])
    assert rel_checked(y, y_ref) <= TRITON_TOL[dtype] and rel_checked(h, h_ref) <= TRITON_TOL[dtype]


@triton_kernels
def test_triton_func_jvp_matches_reference():
    inputs = tuple(triton_inputs(63, 4, 3, 2, seed=14))
    g = torch.Generator().manual_seed(15)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=t.dtype).to(DEVICE) for t in inputs)
    (y, h), (y_t, h_t) = jvp(triton_scan_fn, inputs, tangents)
    (y_ref, h_ref), (y_t_ref, h_t_ref) = jvp(selective_scan_ref, inputs, tangents)
    for got, expected in ((y, y_ref), (h, h_ref), (y_t, y_t_ref), (h_t, h_t_ref)):
        assert rel_checked(got, expected) <= 1e-10


@triton_kernels
@pytest.mark.parametrize("V", [1, 3])
def test_triton_vmap_of_jvp_folds_directions_into_one_kernel_call(V, monkeypatch):
    """The tangent engine's pattern: one unbatched primal, V batched tangents (of x and the
    carried state). The tangent kernel runs once, with K = V directions."""
    inputs = triton_inputs(63, 4, 3, 1, seed=16)
    x, delta, A, B, C, D, z, h0 = inputs
    g = torch.Generator().manual_seed(17)
    xs = torch.randn(V, *x.shape, generator=g, dtype=torch.float64).to(DEVICE)
    hs = torch.randn(V, *h0.shape, generator=g, dtype=torch.float64).to(DEVICE)
    calls = []
    original = triton_scan.scan_tangent
    monkeypatch.setattr(triton_scan, "scan_tangent", lambda *a, **k: calls.append(k.get("K")) or original(*a, **k))

    def sweep(fn):
        tile = lambda xx, hh: fn(xx, delta, A, B, C, D, z, hh)  # noqa: E731
        return vmap(lambda xd, hd: jvp(tile, (x, h0), (xd, hd)), out_dims=(None, 0))(xs, hs)

    (y, h), (y_t, h_t) = sweep(triton_scan_fn)
    assert calls == [V]
    (y_ref, h_ref), (y_t_ref, h_t_ref) = sweep(selective_scan_ref)
    assert y_t.shape == (V, *y.shape) and h_t.shape == (V, *h.shape)
    for got, expected in ((y, y_ref), (h, h_ref), (y_t, y_t_ref), (h_t, h_t_ref)):
        assert rel_checked(got, expected) <= 1e-10


@triton_kernels
def test_triton_vmap_general_rules():
    """Batched primals (folded into the batch), vmap of jvp with batched primals (per-slice
    fallback), and vmap of vjp (the adjoint under vmap)."""
    inputs = triton_inputs(40, 3, 2, 2, seed=18)
    x, rest = inputs[0], inputs[1:]
    g = torch.Generator().manual_seed(19)
    X = torch.randn(2, *x.shape, generator=g, dtype=torch.float64).to(DEVICE)
    T = torch.randn(2, *x.shape, generator=g, dtype=torch.float64).to(DEVICE)
    fn_got = lambda xx: triton_scan_fn(xx, *rest)  # noqa: E731
    fn_ref = lambda xx: selective_scan_ref(xx, *rest)  # noqa: E731
    for got, expected in zip(vmap(fn_got)(X), vmap(fn_ref)(X)):
        assert rel_checked(got, expected) <= 1e-10
    got = vmap(lambda xx, tt: jvp(fn_got, (xx,), (tt,)))(X, T)
    expected = vmap(lambda xx, tt: jvp(fn_ref, (xx,), (tt,)))(X, T)
    for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
        assert rel_checked(a, b) <= 1e-10
    _, pull = vjp(lambda xx: fn_got(xx)[0], x)
    _, pull_ref = vjp(lambda xx: fn_ref(xx)[0], x)
    assert rel_checked(vmap(pull)(T)[0], vmap(pull_ref)(T)[0]) <= 1e-10


@triton_kernels
def test_triton_parameter_gradients_are_refused():
    inputs = triton_inputs(20, 2, 2, 1)
    for index in (2, 5):  # A, D
        leaves = list(inputs)
        leaves[index] = leaves[index].clone().requires_grad_(True)
        y, _ = triton_scan_fn(*leaves)
        with pytest.raises(RuntimeError, match="input gradients only"):
            y.sum().backward()
        # auto never picks compiled kernels when A or D needs a gradient
        assert ops.scan_backend(leaves[0], leaves[2], leaves[5], "auto") == "reference"


# --------------------------------------------------------------------------------------------
# the engines on a whole model


@triton_kernels
def test_triton_adjoint_engine_gradient_with_triton_kernels():
    model = build("track-bi").double().to(DEVICE)
    x = onehot(70).to(DEVICE)  # three tiles of two chunks, the last part-filled
    target = parse_target("sum:b", model)
    expected = TiledEngine(tile=32, backend="reference").gradient(model, x, target.readout([0]))
    got = TiledEngine(tile=32, backend="triton").gradient(model, x, target.readout([0]))
    assert rel_checked(got.gradient, expected.gradient) <= 1e-10
    assert rel_checked(got.target_value, expected.target_value) <= 1e-10


@triton_kernels
@pytest.mark.parametrize("kind", ["track-causal", "track-bi"])
def test_triton_tangent_engine_jvp_with_triton_kernels(kind):
    """Causal models stream all layers per tile, bidirectional ones go layer by layer through
    vmap(jvp(scan.tile)) with an unbatched primal: both fold the directions into K."""
    model = build(kind).double().to(DEVICE)
    output, _, _ = output_function(model)
    x = onehot(80).to(DEVICE)
    directions = torch.randn(2, 1, 80, 4, generator=torch.Generator().manual_seed(20), dtype=torch.float64).to(DEVICE)
    expected_primal, expected_tangent = TiledEngine(tile=32, backend="reference").tangent(model, x, directions, output)
    primal, tangent = TiledEngine(tile=32, backend="triton").tangent(model, x, directions, output)
    assert rel_checked(primal, expected_primal) <= 1e-10
    assert rel_checked(tangent, expected_tangent) <= 1e-10


# --------------------------------------------------------------------------------------------
# which backend runs


@needs_numba
def test_dispatch():
    assert "cpu" in BACKENDS
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    assert ops.scan_backend(x, A, None, "cpu") == "cpu"
    assert cpu_unavailable_reason(torch.device("cpu")) is None
    assert ops.scan_backend(x, A, None) == "cpu"  # None: auto
    assert ops.scan_backend(x, A, None, "auto") == "cpu"
    with torch.enable_grad():  # a parameter gradient (training): auto keeps the reference
        assert ops.scan_backend(x, A.clone().requires_grad_(), None, "auto") == "reference"
        assert ops.scan_backend(x, A, torch.zeros(2).requires_grad_(), "auto") == "reference"
    assert "CPU tensors" in cpu_unavailable_reason(torch.device("meta"))


def test_missing_numba_is_a_clear_error(monkeypatch):
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    monkeypatch.setattr(backends, "_cpu_module", lambda: None)
    with pytest.raises(RuntimeError, match="numba is not installed"):
        ops.scan_backend(x, A, None, "cpu")
    assert ops.scan_backend(x, A, None, "auto") == "reference"


@needs_numba
def test_auto_picks_compiled_cpu_kernels_on_cpu_and_triton_on_cuda():
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    assert ops.scan_backend(x, A, None, "auto") == "cpu"
    assert ops.scan_backend(x, A, None, "reference") == "reference"
    if torch.cuda.is_available():
        assert ops.scan_backend(x.cuda(), A.cuda(), None, "auto") == "triton"
        with torch.no_grad():  # no gradient wanted: parameters requiring grad do not matter
            assert ops.scan_backend(x.cuda(), A.cuda().requires_grad_(), None, "auto") == "triton"


@needs_triton
def test_forced_triton_without_a_gpu_is_a_clear_error(monkeypatch):
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    monkeypatch.setattr(triton_common, "interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        ops.scan_backend(x, A, None, "triton")
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        selective_scan(x, x, A, x, x, backend="triton")
    monkeypatch.setattr(backends, "_triton_module", lambda: None)
    assert "not installed" in triton_unavailable_reason(torch.device("cuda"))
    with pytest.raises(RuntimeError, match="not installed"):
        ops.scan_backend(x, A, None, "triton")
    monkeypatch.setattr(backends, "_cpu_module", lambda: None)
    assert ops.scan_backend(x, A, None, "auto") == "reference"


def test_unknown_backend_names_the_choices():
    """An unknown backend name is a ValueError naming the choices, from every op and the rule."""
    inputs = cpu_inputs(3, 2, 2, 1)
    for name in ("cuda", "fast", "nope"):
        with pytest.raises(ValueError, match="reference, triton, auto"):
            selective_scan(*inputs, backend=name)
        with pytest.raises(ValueError, match="reference, triton, auto"):
            selective_scan_saving(*inputs, backend=name)
        with pytest.raises(ValueError, match="reference, triton, auto"):
            ops.scan_backend(inputs[0], inputs[2], inputs[5], name)
        with pytest.raises(ValueError, match="reference, triton, auto"):
            backends.requested(name)


def test_backend_none_means_auto(monkeypatch):
    """There is no process-wide default: `backend=None` is "auto" (with numba and without), and
    every name is passed through as given."""
    assert backends.requested(None) == "auto"
    assert [backends.requested(name) for name in BACKENDS] == list(BACKENDS)
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    for cpu_module in (cpu_common, None):  # with numba and without
        monkeypatch.setattr(backends, "_cpu_module", lambda _m=cpu_module: _m)
        assert ops.scan_backend(x, A, None) == ops.scan_backend(x, A, None, "auto")
        assert ops.scan_backend(x, A, None, None) == ("cpu" if cpu_module is not None else "reference")
        with torch.enable_grad():
            assert ops.scan_backend(x, A.clone().requires_grad_(), None) == "reference"
    assert not hasattr(backends, "_default")


@needs_numba
def test_ops_called_with_backend_none_run_the_auto_rule(monkeypatch):
    """`backend=None` runs the auto rule, checked by which code runs: on CPU tensors without
    parameter gradients the CPU kernels, with A or D wanting a gradient the reference."""
    inputs = cpu_inputs(20, 3, 2, 1, seed=24)
    x, delta, A, B, C, D, z, h0 = inputs
    y_ref, h_ref = selective_scan_ref(*inputs)
    calls = []
    real = scan_cpu.scan_forward
    monkeypatch.setattr(scan_cpu, "scan_forward", lambda *a, **k: calls.append("cpu") or real(*a, **k))
    real_ref = ops.selective_scan_ref
    monkeypatch.setattr(ops, "selective_scan_ref", lambda *a, **k: calls.append("reference") or real_ref(*a, **k))
    y, h = selective_scan(*inputs)
    assert calls == ["cpu"]
    *_, residual = selective_scan_saving(*inputs, backend=None)
    assert calls == ["cpu", "cpu"] and residual.backend == "cpu"
    assert rel(y, y_ref) <= 1e-10 and rel(h, h_ref) <= 1e-10
    calls.clear()
    with torch.enable_grad():
        for trained in ((x, delta, A.clone().requires_grad_(), B, C, D, z, h0),
                        (x, delta, A, B, C, D.clone().requires_grad_(), z, h0)):
            y_t, h_t = selective_scan(*trained, backend=None)
            assert y_t.grad_fn is not None
            assert torch.equal(y_t.detach(), y_ref) and torch.equal(h_t.detach(), h_ref)
    assert calls == ["reference", "reference"]
    with torch.no_grad():  # no gradient wanted: a parameter requiring one does not matter
        selective_scan(x, delta, A.clone().requires_grad_(), B, C, D, z, h0)
    assert calls[-1] == "cpu"


@needs_triton
def test_interpreter_flag_follows_conftest():
    """conftest.py sets TRITON_INTERPRET=1 without CUDA; the kernels were built for it."""
    assert triton_scan.interpreted() == (not torch.cuda.is_available())


CPU, CUDA, META = torch.device("cpu"), torch.device("cuda"), torch.device("meta")


def test_resolve_backend_auto_rule(monkeypatch):
    """auto: Triton for CUDA tensors when Triton imports, the CPU kernels for CPU tensors when numba
    imports, the reference otherwise, and always the reference when parameter gradients are wanted."""
    expected = "cpu" if cpu_common.available() else "reference"
    assert backends.resolve_backend("auto", CPU) == expected  # this machine, nothing patched
    monkeypatch.setattr(backends, "_cpu_module", lambda: cpu_common)
    monkeypatch.setattr(backends, "_triton_module", lambda: triton_common)
    assert backends.resolve_backend("auto", CPU) == "cpu"
    assert backends.resolve_backend("auto", CUDA) == "triton"  # only the device type is looked at
    assert backends.resolve_backend("auto", META) == "reference"
    for device in (CPU, CUDA, META):
        assert backends.resolve_backend("auto", device, parameter_grads=True) == "reference"
        assert backends.resolve_backend("reference", device) == "reference"
        assert backends.resolve_backend("reference", device, parameter_grads=True) == "reference"
    monkeypatch.setattr(backends, "_cpu_module", lambda: None)
    assert backends.resolve_backend("auto", CPU) == "reference"
    assert backends.resolve_backend("auto", CUDA) == "triton"
    monkeypatch.setattr(backends, "_triton_module", lambda: None)
    assert backends.resolve_backend("auto", CUDA) == "reference"
    with pytest.raises(ValueError, match="reference, triton, auto"):
        backends.resolve_backend("fast", CPU)


def test_resolve_backend_forced_and_unavailable_reason(monkeypatch):
    """A forced "cpu" or "triton" is returned as is (parameter gradients or not) or refused with the reason."""

    class FakeTriton:
        interpreted = staticmethod(lambda: False)

    monkeypatch.setattr(backends, "_cpu_module", lambda: cpu_common)
    monkeypatch.setattr(backends, "_triton_module", lambda: FakeTriton)
    assert backends.resolve_backend("cpu", CPU) == "cpu"
    assert backends.resolve_backend("cpu", CPU, parameter_grads=True) == "cpu"  # the CPU scan gives dA and dD
    assert backends.resolve_backend("triton", CUDA) == "triton"
    assert backends.resolve_backend("triton", CUDA, parameter_grads=True) == "triton"  # refused in its backward
    with pytest.raises(RuntimeError, match="kernel backend 'cpu' cannot run here: the CPU kernels need CPU tensors"):
        backends.resolve_backend("cpu", CUDA)
    with pytest.raises(RuntimeError, match="kernel backend 'triton' cannot run here: the Triton kernels need CUDA"):
        backends.resolve_backend("triton", CPU)
    with pytest.raises(RuntimeError, match="do not support meta tensors"):
        backends.resolve_backend("triton", META)
    monkeypatch.setattr(FakeTriton, "interpreted", staticmethod(lambda: True))
    assert backends.resolve_backend("triton", CPU) == "triton"
    for device in (CPU, CUDA, META):
        assert backends.unavailable_reason("reference", device) is None
        assert backends.unavailable_reason("auto", device) is None
    assert backends.unavailable_reason("cpu", CPU) is None and backends.unavailable_reason("triton", CUDA) is None
    assert backends.unavailable_reason("cpu", CUDA) == cpu_unavailable_reason(CUDA)
    assert backends.unavailable_reason("triton", META) == triton_unavailable_reason(META)
    monkeypatch.setattr(backends, "_cpu_module", lambda: None)
    assert "numba is not installed" in backends.unavailable_reason("cpu", CPU)
    with pytest.raises(ValueError, match="reference, triton, auto"):
        backends.unavailable_reason("fast", CPU)


def test_top_level_resolve_backend_is_the_rule():
    """`pgf_kernels.resolve_backend` is `backends.resolve_backend(name, device, parameter_grads)`;
    the scan's choice for given tensors is `scan.ops.scan_backend(x, A, D, backend)`."""
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    assert resolve_backend is backends.resolve_backend
    assert resolve_backend("reference", CPU) == "reference"
    assert resolve_backend("auto", CPU) == ops.scan_backend(x, A, None, "auto") == ops.scan_backend(x, A, None)
    with torch.enable_grad():
        assert ops.scan_backend(x, A.clone().requires_grad_(), None, "auto") == "reference"
        assert resolve_backend("auto", CPU, parameter_grads=True) == "reference"


def refuse(what):
    def run(*args, **kwargs):
        raise AssertionError(f"{what} ran")

    return run


@needs_numba
def test_explicit_backend_beats_the_auto_rule(monkeypatch):
    """Each scan op runs the backend it is given, whatever the auto rule would pick; the auto rule
    only where `backend` is None. Checked by which code runs: the other backend's entry raises."""
    inputs = cpu_inputs(20, 3, 2, 1, seed=21)
    x, delta, A, B, C, D, z, h0 = inputs
    g = torch.Generator().manual_seed(22)
    dy, dh = torch.randn(x.shape, generator=g, dtype=x.dtype), torch.randn(h0.shape, generator=g, dtype=h0.dtype)
    y_ref, h_ref = selective_scan_ref(*inputs)
    with monkeypatch.context() as patch:
        for name in ("scan_forward", "scan_backward", "scan_tangent"):
            patch.setattr(scan_cpu, name, refuse("the CPU kernels"))
        y, h = selective_scan(*inputs, backend="reference")  # auto would run the CPU kernels here
        assert torch.equal(y, y_ref) and torch.equal(h, h_ref)
        *saved, residual = selective_scan_saving(*inputs, backend="reference")
        assert residual is None and torch.equal(saved[0], y_ref)
        with pytest.raises(AssertionError, match="the CPU kernels ran"):
            selective_scan(*inputs)  # None: auto
        with pytest.raises(AssertionError, match="the CPU kernels ran"):
            selective_scan_saving(*inputs, backend=None)
    calls = []
    for name in ("scan_forward", "scan_backward"):
        real = getattr(scan_cpu, name)
        monkeypatch.setattr(scan_cpu, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    monkeypatch.setattr(ops, "selective_scan_ref", refuse("the reference"))
    y, h = selective_scan(*inputs, backend="cpu")
    y_s, h_s, residual = selective_scan_saving(*inputs, backend="cpu")
    assert calls == ["scan_forward", "scan_forward"] and residual.backend == "cpu"
    grads = selective_scan_vjp(residual, x, delta, A, B, C, D, z, dy, dh)  # the residual's backend
    assert calls[-1] == "scan_backward"
    for backend in ("cpu", "auto"):
        again = selective_scan_vjp(residual, x, delta, A, B, C, D, z, dy, dh, backend=backend)
        assert all(torch.equal(a, b) for a, b in zip(grads, again))
    with pytest.raises(ValueError, match="made by the 'cpu' kernels"):
        selective_scan_vjp(residual, x, delta, A, B, C, D, z, dy, dh, backend="triton")
    with pytest.raises(ValueError, match="reference, triton, auto"):
        selective_scan_vjp(residual, x, delta, A, B, C, D, z, dy, dh, backend="fast")
    with torch.enable_grad():  # A wants a gradient: auto would keep the reference, "cpu" runs the CPU kernels
        trained = (x, delta, A.clone().requires_grad_(), B, C, D, z, h0)
        y_t, _ = selective_scan(*trained, backend="cpu")
        assert calls[-1] == "scan_forward" and torch.equal(y_t.detach(), y)
        with pytest.raises(AssertionError, match="the reference ran"):
            selective_scan(*trained)  # None: auto
    assert rel(y, y_ref) <= 1e-10 and rel(h, h_ref) <= 1e-10
    assert torch.equal(y, y_s) and torch.equal(h, h_s)


@needs_kernels
def test_explicit_triton_backend_beats_the_auto_rule(monkeypatch):
    inputs = triton_inputs(10, 2, 2, 1, seed=23)
    calls = []
    real = triton_scan.scan_forward
    monkeypatch.setattr(triton_scan, "scan_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(ops, "selective_scan_ref", refuse("the reference"))
    monkeypatch.setattr(scan_cpu, "scan_forward", refuse("the CPU kernels"))
    x, delta, A, B, C, D, z, h0 = inputs
    for trained in (False, True):  # auto would pick the CPU kernels (CPU tensors), or the reference (A trained)
        args = (x, delta, A.clone().requires_grad_() if trained else A, B, C, D, z, h0)
        with torch.enable_grad():
            y, h = selective_scan(*args, backend="triton", chunk=4)
            _, _, residual = selective_scan_saving(*args, backend="triton", chunk=4)
        assert residual.backend == "triton"
    assert len(calls) == 4
    y_ref, h_ref = selective_scan_ref(*inputs)
    assert rel_checked(y, y_ref) <= 1e-10 and rel_checked(h, h_ref) <= 1e-10
