"""The SSD (Mamba-2) scan, every backend against the step-by-step PyTorch reference (fp64 unless
a test is about another dtype): outputs, carried state, every gradient (autograd), tangents
(torch.func.jvp, vmap of jvp), vmap of the primal, the saving / VJP pair, and which backend runs.

* reference: checked against the Mamba-1 selective scan (P = 1 heads are Mamba-1 channels).
* cpu: the chunked matrix form in PyTorch; chunks that do not divide L, G = 1 and G > 1.
* triton: Triton's interpreter on CPU (conftest.py sets TRITON_INTERPRET=1), small shapes,
  `slow` there; on a machine with CUDA the compiled kernels. Every buffer the Triton wrappers
  allocate starts as NaN, so a missed write fails.
"""

import pytest
import torch
from torch.func import jvp, vmap

from pgf_kernels import selective_scan_ref, ssd_scan, ssd_scan_ref, ssd_scan_saving, ssd_scan_vjp
from pgf_kernels.ssd import ops
from pgf_kernels.ssd.chunked import within_chunk_decays

try:
    from pgf_kernels import triton_common
    from pgf_kernels.ssd import autograd as ssd_autograd
    from pgf_kernels.ssd import triton as ssd_triton
except ImportError:  # Triton is a dependency on Linux only
    triton_common = ssd_triton = ssd_autograd = None

NAMES = ("x", "dt", "A", "B", "C", "D", "h0")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
RUNNABLE = ssd_triton is not None and (DEVICE.type == "cuda" or ssd_triton.interpreted())
TOL = 1e-10


def triton_kernels(test):
    """A test of the Triton kernels: skipped where they cannot run, `slow` when interpreted (CPU)."""
    test = pytest.mark.skipif(not RUNNABLE, reason="no Triton, or no CUDA and the Triton interpreter is off")(test)
    return test if torch.cuda.is_available() else pytest.mark.slow(test)


@pytest.fixture(autouse=True)
def nan_scratch():
    """Every output and scratch buffer of the Triton wrappers starts as NaN."""
    if triton_common is None:
        yield
        return
    previous, triton_common.NAN_FILL = triton_common.NAN_FILL, True
    yield
    triton_common.NAN_FILL = previous


def inputs(L, H=4, P=3, N=5, G=2, batch=2, seed=0, dtype=torch.float64, device="cpu", with_D=True, with_h0=True, stiff=False):
    """(x, dt, A, B, C, D, h0); "stiff" reaches dt * |A| ~ 50 per step."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    x = r(batch, L, H, P)
    dt = torch.nn.functional.softplus(r(batch, L, H) - 1.0) + 1e-3
    A = -torch.exp(0.5 * r(H))
    if stiff:
        dt, A = 0.5 + 4.5 * torch.rand(batch, L, H, generator=g, dtype=torch.float64), -torch.linspace(1.0, 10.0, H, dtype=torch.float64)
    B, C = r(batch, L, G, N), r(batch, L, G, N)
    D = r(H) if with_D else None
    h0 = r(batch, H, P, N) if with_h0 else None
    return [None if t is None else t.to(device, dtype) for t in (x, dt, A, B, C, D, h0)]


def rel(got, expected):
    """Max abs difference relative to the max magnitude of `expected` (and the values are finite)."""
    got, expected = got.detach().double().cpu(), expected.detach().double().cpu()
    assert got.shape == expected.shape and torch.isfinite(got).all(), "shape differs or non-finite values"
    return float((got - expected).abs().max() / expected.abs().max().clamp(min=1e-300))


def reference_grads(args, dy, dh):
    """Every present input's gradient of <y, dy> + <h_last, dh>, by autograd through the fp64 reference."""
    leaves = [None if t is None else t.detach().double().requires_grad_(True) for t in args]
    y, h = ssd_scan_ref(*leaves)
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad((y * dy.double()).sum() + (h * dh.double()).sum(), present))
    return {name: next(grads) for name, t in zip(NAMES, leaves) if t is not None}


def cotangents(args, seed=1):
    x, h_shape = args[0], (args[0].shape[0], args[0].shape[2], args[0].shape[3], args[3].shape[3])
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(x.shape, generator=g, dtype=torch.float64).to(x.device),
            torch.randn(h_shape, generator=g, dtype=torch.float64).to(x.device))


# --------------------------------------------------------------------------------------------
# the reference


def test_reference_with_single_column_heads_is_the_mamba1_scan():
    """P = 1, G = 1: head h is Mamba-1 channel h with A[h] on every state column."""
    x, dt, A, B, C, D, h0 = inputs(30, H=5, P=1, N=4, G=1, seed=3)
    y, h = ssd_scan_ref(x, dt, A, B, C, D, h0)
    y1, h1 = selective_scan_ref(x[..., 0], dt, A[:, None].expand(5, 4), B[:, :, 0], C[:, :, 0], D, None, h0[:, :, 0])
    assert rel(y[..., 0], y1) <= 1e-12 and rel(h[:, :, 0], h1) <= 1e-12


def test_reference_groups_feed_consecutive_heads():
    """G = 2 groups over H = 4 heads equals G = 4 with each group repeated for its two heads."""
    x, dt, A, B, C, D, h0 = inputs(20, H=4, G=2, seed=4)
    y, h = ssd_scan_ref(x, dt, A, B, C, D, h0)
    y4, h4 = ssd_scan_ref(x, dt, A, B.repeat_interleave(2, 2), C.repeat_interleave(2, 2), D, h0)
    assert rel(y, y4) <= 1e-15 and rel(h, h4) <= 1e-15
    assert rel(ssd_scan_ref(x, dt, A, B, C.flip(2), D, h0)[0], y) > 1e-3  # which group feeds which head matters


def test_reference_zero_length_returns_the_initial_state():
    x, dt, A, B, C, D, h0 = inputs(0)
    y, h = ssd_scan_ref(x, dt, A, B, C, D, h0)
    assert y.shape == (2, 0, 4, 3) and torch.equal(h, h0)


def test_shape_errors_name_the_mismatch():
    x, dt, A, B, C, D, h0 = inputs(10, H=4, G=2)
    with pytest.raises(ValueError, match="must divide"):
        ssd_scan(x, dt, A, B[:, :, :1].expand(2, 10, 3, 5), C[:, :, :1].expand(2, 10, 3, 5), backend="cpu")
    with pytest.raises(ValueError, match="expected dt"):
        ssd_scan(x, dt[:, :5], A, B, C, backend="cpu")
    with pytest.raises(ValueError, match="expected h0"):
        ssd_scan(x, dt, A, B, C, D, h0[:, :2], backend="reference")


# --------------------------------------------------------------------------------------------
# the chunked form ("cpu")

# (L, H, P, N, G, chunk, with_D, with_h0): chunks that divide L, that do not, longer than L, of 1
CHUNK_CASES = [
    (1, 4, 3, 5, 2, None, True, True),
    (37, 4, 3, 5, 2, 8, True, True),
    (37, 4, 3, 5, 1, 64, False, False),
    (40, 6, 2, 3, 3, 10, True, False),
    (37, 2, 4, 2, 1, 1, False, True),
    (300, 4, 3, 5, 2, None, True, True),
]


@pytest.mark.parametrize("case", CHUNK_CASES, ids=lambda c: f"L{c[0]}-G{c[4]}-c{c[5]}-D{int(c[6])}-h{int(c[7])}")
def test_chunked_outputs_and_every_gradient_equal_the_reference_fp64(case):
    L, H, P, N, G, chunk, with_D, with_h0 = case
    args = inputs(L, H, P, N, G, seed=L, with_D=with_D, with_h0=with_h0)
    leaves = [None if t is None else t.clone().requires_grad_(True) for t in args]
    y, h = ssd_scan(*leaves, backend="cpu", chunk=chunk)
    y_ref, h_ref = ssd_scan_ref(*args)
    assert y.dtype == torch.float64 and h.dtype == torch.float64
    assert rel(y, y_ref) <= TOL and rel(h, h_ref) <= TOL
    dy, dh = cotangents(args)
    present = [(name, t) for name, t in zip(NAMES, leaves) if t is not None]
    grads = torch.autograd.grad((y, h), [t for _, t in present], (dy, dh))
    expected = reference_grads(args, dy, dh)
    for (name, _), grad in zip(present, grads):
        assert rel(grad, expected[name]) <= TOL, name


@pytest.mark.parametrize("G", [1, 2])
def test_chunked_jvp_of_every_input_equals_the_reference(G):
    args = tuple(inputs(45, G=G, seed=5 + G))
    g = torch.Generator().manual_seed(6)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=t.dtype) for t in args)
    (y, h), (yt, ht) = jvp(lambda *a: ssd_scan(*a, backend="cpu", chunk=7), args, tangents)
    (y_r, h_r), (yt_r, ht_r) = jvp(ssd_scan_ref, args, tangents)
    for got, expected in ((y, y_r), (h, h_r), (yt, yt_r), (ht, ht_r)):
        assert rel(got, expected) <= TOL


def test_chunked_vmap_of_jvp_with_K_directions_equals_a_loop():
    """The tangent engine's pattern: one primal, K tangents of x and h0 under vmap."""
    x, dt, A, B, C, D, h0 = inputs(50, G=2, batch=1, seed=7)
    K = 3
    g = torch.Generator().manual_seed(8)
    xs = torch.randn(K, *x.shape, generator=g, dtype=x.dtype)
    hs = torch.randn(K, *h0.shape, generator=g, dtype=h0.dtype)

    def sweep(fn):
        tile = lambda xx, hh: fn(xx, dt, A, B, C, D, hh)  # noqa: E731
        return vmap(lambda xd, hd: jvp(tile, (x, h0), (xd, hd)), out_dims=(None, 0))(xs, hs)

    (y, h), (yt, ht) = sweep(lambda *a: ssd_scan(*a, backend="cpu", chunk=16))
    assert yt.shape == (K, *y.shape) and ht.shape == (K, *h.shape)
    for k in range(K):
        _, (yt_r, ht_r) = jvp(lambda xx, hh: ssd_scan_ref(xx, dt, A, B, C, D, hh), (x, h0), (xs[k], hs[k]))
        assert rel(yt[k], yt_r) <= TOL and rel(ht[k], ht_r) <= TOL


def test_chunked_vmap_of_the_primal_equals_a_loop():
    x, dt, A, B, C, D, h0 = inputs(30, seed=9)
    X = torch.randn(3, *x.shape, dtype=x.dtype)
    y, h = vmap(lambda xx: ssd_scan(xx, dt, A, B, C, D, h0, backend="cpu", chunk=8))(X)
    for v in range(3):
        y_r, h_r = ssd_scan_ref(X[v], dt, A, B, C, D, h0)
        assert rel(y[v], y_r) <= TOL and rel(h[v], h_r) <= TOL


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("split", [1, 20, 36])
def test_state_carried_across_two_calls_equals_one_call(backend, split):
    x, dt, A, B, C, D, h0 = inputs(37, seed=10)
    y, h = ssd_scan(x, dt, A, B, C, D, h0, backend=backend, chunk=8)
    y1, h1 = ssd_scan(x[:, :split], dt[:, :split], A, B[:, :split], C[:, :split], D, h0, backend=backend, chunk=8)
    y2, h2 = ssd_scan(x[:, split:], dt[:, split:], A, B[:, split:], C[:, split:], D, h1, backend=backend, chunk=8)
    assert rel(torch.cat([y1, y2], 1), y) <= 1e-12 and rel(h2, h) <= 1e-12


def test_chunked_zero_length_and_chunk_longer_than_L():
    x, dt, A, B, C, D, h0 = inputs(0)
    y, h = ssd_scan(x, dt, A, B, C, D, h0, backend="cpu")
    assert y.shape == (2, 0, 4, 3) and torch.equal(h, h0)
    y, h = ssd_scan(x, dt, A, B, C, backend="cpu")
    assert h.shape == (2, 4, 3, 5) and not h.any()
    args = inputs(5, seed=11)
    for got, expected in zip(ssd_scan(*args, backend="cpu", chunk=64), ssd_scan_ref(*args)):
        assert rel(got, expected) <= TOL


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_low_precision_dtypes_and_stiff_decays(dtype):
    """y in x's dtype, h_last in fp32; stiff decays (dt |A| ~ 50 per step) stay finite."""
    args64 = inputs(200, seed=12, stiff=True)
    assert (args64[1] * args64[2].abs()).max() > 40
    args = [t.to(dtype) for t in args64]
    y, h = ssd_scan(*args, backend="cpu", chunk=64)
    assert y.dtype == dtype and h.dtype == torch.float32
    y_r, h_r = ssd_scan_ref(*[t.double() for t in args])
    tol = 2e-5 if dtype == torch.float32 else 1e-2
    assert rel(y, y_r) <= tol and rel(h, h_r) <= tol


# --------------------------------------------------------------------------------------------
# ops: backends, the saving / VJP pair


def test_auto_picks_the_chunked_form_on_cpu_and_names_are_checked():
    x = torch.zeros(1, 2, 2, 2)
    assert ops.ssd_backend(x, None) == ops.ssd_backend(x, "auto") == "cpu"
    assert ops.ssd_backend(x, "reference") == "reference" and ops.ssd_backend(x, "cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown kernel backend"):
        ops.ssd_backend(x, "numba")


def test_forced_triton_where_it_cannot_run_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ops, "triton_unavailable_reason", lambda device: "no GPU here")
    args = inputs(5)
    with pytest.raises(RuntimeError, match="'triton' cannot run here: no GPU here"):
        ssd_scan(*args, backend="triton")
    assert ops.ssd_backend(args[0], None) == "cpu"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_within_chunk_decays_equal_exp_down_to_twice_the_smallest_normal_number(dtype):
    # a stiff head: the decays span exp(0) to far below the dtype's range, where exp is slow on CPU
    steps = torch.linspace(0.5, 30.0, 48, dtype=torch.float64) * (1 if dtype == torch.float32 else 8)
    a = -torch.cumsum(steps, 0).to(dtype)
    got = within_chunk_decays(a)
    diff = a[:, None] - a[None, :]
    plain = torch.exp(diff.masked_fill(~torch.ones_like(diff, dtype=torch.bool).tril(), float("-inf")))
    floor = 2 * torch.finfo(dtype).tiny
    kept, flushed = plain >= 1.01 * floor, plain < 0.99 * floor
    assert kept.sum() > 100 and flushed.tril().sum() > 100  # both sides of the floor occur
    assert torch.equal(got[kept], plain[kept])
    assert not got[flushed].any()  # flushed to 0, and 0 above the diagonal
    assert torch.isfinite(got).all()


def test_reference_saving_keeps_nothing_and_its_vjp_recomputes_under_autograd():
    args = inputs(37, G=2, seed=14)
    x, dt, A, B, C, D, h0 = args
    y, h, residual = ssd_scan_saving(*args, backend="reference")
    assert residual is None and not y.requires_grad
    y_r, h_r = ssd_scan_ref(*args)
    assert rel(y, y_r) <= TOL and rel(h, h_r) <= TOL
    dy, dh = cotangents(args)
    dx, ddt, dB, dC, dh0 = ssd_scan_vjp(residual, x, dt, A, B, C, D, dy, dh, h0=h0, backend="reference")
    expected = reference_grads(args, dy, dh)
    for name, got in zip(("x", "dt", "B", "C", "h0"), (dx, ddt, dB, dC, dh0)):
        assert rel(got, expected[name]) <= TOL, name


@pytest.mark.parametrize("case", CHUNK_CASES, ids=lambda c: f"L{c[0]}-G{c[4]}-c{c[5]}-D{int(c[6])}-h{int(c[7])}")
def test_cpu_saving_keeps_chunk_starts_and_the_hand_written_vjp_equals_the_reference(case, monkeypatch):
    L, H, P, N, G, chunk, with_D, with_h0 = case
    args = inputs(L, H=H, P=P, N=N, G=G, seed=15, with_D=with_D, with_h0=with_h0)
    x, dt, A, B, C, D, h0 = args
    y, h, residual = ssd_scan_saving(*args, backend="cpu", chunk=chunk)
    T = min(chunk or 64, L)
    assert residual.backend == "cpu" and residual.starts.shape == (2, -(-L // T), H, P, N)
    y_r, h_r = ssd_scan_ref(*args)
    assert rel(y, y_r) <= TOL and rel(h, h_r) <= TOL
    dy, dh = cotangents(args)
    if h0 is None:
        args[6] = torch.zeros_like(dh)
    expected = reference_grads(args, dy, dh)
    _, _, with_work = ssd_scan_saving(*args, backend="cpu", chunk=chunk, keep_work=True)
    assert residual.kept is None and with_work.kept.decays.shape[-2:] == (T, T)
    monkeypatch.setattr(torch.autograd, "grad", None)  # pulled back by hand, not by autograd
    from_starts = ssd_scan_vjp(residual, x, dt, A, B, C, D, dy, dh)
    from_work = ssd_scan_vjp(with_work, x, dt, A, B, C, D, dy, dh)
    recomputed = ssd_scan_vjp(None, x, dt, A, B, C, D, dy, dh, h0=h0, backend="cpu", chunk=chunk)
    for vjp in (from_starts, from_work, recomputed):
        for name, got, like in zip(("x", "dt", "B", "C", "h0"), vjp, (x, dt, B, C, dh)):
            assert got.dtype == like.dtype and rel(got, expected[name]) <= TOL, name


def test_cpu_vjp_of_missing_cotangents_and_zero_length():
    args = inputs(21, seed=16)
    x, dt, A, B, C, D, h0 = args
    dy, dh = cotangents(args)
    for dy_, dh_ in ((dy, None), (None, dh)):
        expected = reference_grads(args, torch.zeros_like(dy) if dy_ is None else dy_,
                                   torch.zeros_like(dh) if dh_ is None else dh_)
        got = ssd_scan_vjp(None, x, dt, A, B, C, D, dy_, dh_, h0=h0, backend="cpu", chunk=8)
        for name, g in zip(("x", "dt", "B", "C", "h0"), got):
            assert rel(g, expected[name]) <= TOL if expected[name].abs().max() > 0 else not g.any(), name
    empty = inputs(0, seed=16)
    _, _, residual = ssd_scan_saving(*empty, backend="cpu")
    dx, ddt, dB, dC, dh0 = ssd_scan_vjp(residual, *empty[:6], empty[0], dh)
    assert dx.shape == empty[0].shape and ddt.shape == empty[1].shape and dB.shape == dC.shape == empty[3].shape
    assert torch.equal(dh0, dh)


def test_cpu_vjp_fp32_and_stiff_decays():
    args = inputs(70, G=2, seed=17, stiff=True)
    dy, dh = cotangents(args)
    expected = reference_grads(args, dy, dh)
    single = [t.float() for t in args]
    for keep_work in (False, True):
        _, _, residual = ssd_scan_saving(*single, backend="cpu", chunk=16, keep_work=keep_work)
        got = ssd_scan_vjp(residual, *single[:6], dy.float(), dh.float())
        for name, g in zip(("x", "dt", "B", "C", "h0"), got):
            assert g.dtype == torch.float32 and rel(g, expected[name]) <= 1e-5, (name, keep_work)


def test_vjp_without_h0_gives_the_cotangent_of_the_zero_start_state():
    args = inputs(20, seed=20, with_h0=False)
    dy, dh = cotangents(args)
    _, _, residual = ssd_scan_saving(*args, backend="cpu", chunk=6)
    *_, dh0 = ssd_scan_vjp(residual, *args[:6], dy, dh)
    args[6] = torch.zeros_like(dh)
    assert rel(dh0, reference_grads(args, dy, dh)["h0"]) <= TOL
    with pytest.raises(ValueError, match="made by the 'cpu' kernels"):
        ssd_scan_vjp(residual, *args[:6], dy, dh, backend="reference")


# --------------------------------------------------------------------------------------------
# the Triton kernels


@pytest.mark.skipif(not RUNNABLE, reason="no Triton, or no CUDA and the Triton interpreter is off")
def test_triton_zero_length_launches_nothing_and_returns_the_initial_state():
    x, dt, A, B, C, D, h0 = inputs(0, device=DEVICE)
    y, h = triton_fn(x, dt, A, B, C, D, h0)
    assert y.shape == (2, 0, 4, 3) and torch.equal(h, h0)

# (L, H, P, N, G, batch, chunk, block overrides); chunks never divide L
TRITON_CASES = [
    (1, 2, 4, 4, 1, 2, 8, None),
    (29, 4, 5, 6, 2, 2, 8, None),
    (37, 2, 24, 4, 1, 1, 12, {"p": 16}),  # two P-blocks, the second part-filled
    (23, 4, 4, 8, 2, 1, 20, None),  # a chunk wider than tl.dot's 16-wide minimum block
]
TRITON_IDS = [f"L{c[0]}-G{c[4]}-c{c[6]}" + ("-blocks" if c[7] else "") for c in TRITON_CASES]


@triton_kernels
@pytest.mark.parametrize("case", TRITON_CASES, ids=TRITON_IDS)
def test_triton_forward_and_backward_kernels(case):
    L, H, P, N, G, batch, chunk, blocks = case
    for with_D_h0 in (True, False):
        args = inputs(L, H, P, N, G, batch, seed=L, device=DEVICE, with_D=with_D_h0, with_h0=with_D_h0)
        y, h, starts = ssd_triton.ssd_forward(*args, chunk=chunk, blocks=blocks)
        y_r, h_r = ssd_scan_ref(*args)
        assert rel(y, y_r) <= TOL and rel(h, h_r) <= TOL
        assert starts.shape == (batch, -(-L // chunk), H, P, N)
        if L > chunk:  # the saved start of chunk 1 is the state after the first chunk
            head = [t if t is None or name in ("A", "D", "h0") else t[:, :chunk] for name, t in zip(NAMES, args)]
            assert rel(starts[:, 1], ssd_scan_ref(*head)[1]) <= TOL
        dy, dh = cotangents(args, seed=L + 1)
        x, dt, A, B, C, D, h0 = args
        dx, ddt, dB, dC, dh0, dA, dD = ssd_triton.ssd_backward(x, dt, A, B, C, D, starts, dy, dh, chunk=chunk, blocks=blocks)
        if h0 is None:  # dh0 is returned anyway: the cotangent of the zero start state
            args[6] = torch.zeros_like(h)
        expected = reference_grads(args, dy, dh)
        got = {"x": dx, "dt": ddt, "A": dA, "B": dB, "C": dC, "D": dD, "h0": dh0}
        assert (dD is None) == (D is None)
        for name, value in expected.items():
            assert rel(got[name], value) <= TOL, name


@triton_kernels
@pytest.mark.parametrize("case", TRITON_CASES[1:], ids=TRITON_IDS[1:])
def test_triton_tangent_kernel_K_directions_every_input(case):
    L, H, P, N, G, batch, chunk, blocks = case
    args = inputs(L, H, P, N, G, batch, seed=L + 2, device=DEVICE)
    K = 2
    g = torch.Generator().manual_seed(3)
    tangents = [torch.randn(K, *t.shape, generator=g, dtype=torch.float64).to(DEVICE) for t in args]
    yt, ht = ssd_triton.ssd_tangent(*args, tangents, chunk=chunk, blocks=blocks)
    for k in range(K):
        _, (yt_r, ht_r) = jvp(ssd_scan_ref, tuple(args), tuple(t[k] for t in tangents))
        assert rel(yt[k], yt_r) <= TOL and rel(ht[k], ht_r) <= TOL


@triton_kernels
def test_triton_tangent_kernel_partial_tangents():
    """Only x' and h0' (the engine's pattern), no D; then only dt' and C' with no h0."""
    args = inputs(29, seed=4, device=DEVICE, with_D=False)
    g = torch.Generator().manual_seed(5)
    r = lambda t: torch.randn(2, *t.shape, generator=g, dtype=torch.float64).to(DEVICE)  # noqa: E731
    for present in ((0, 6), (1, 4)):
        call = list(args) if 6 in present else args[:6] + [None]
        tangents = [r(t) if i in present else None for i, t in enumerate(call)]
        yt, ht = ssd_triton.ssd_tangent(*call, tangents, chunk=8)
        for k in range(2):
            full = tuple(torch.zeros_like(t) if tangents[i] is None else tangents[i][k] for i, t in enumerate(call) if t is not None)
            _, (yt_r, ht_r) = jvp(lambda *a: ssd_scan_ref(*a[:5], None, *a[5:]), tuple(t for t in call if t is not None), full)
            assert rel(yt[k], yt_r) <= TOL and rel(ht[k], ht_r) <= TOL


def triton_fn(*args, chunk=8):
    return ssd_scan(*args, backend="triton", chunk=chunk)


@triton_kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triton_autograd_every_gradient_matches_the_reference(dtype):
    args = inputs(29, G=2, seed=15, device=DEVICE, dtype=dtype)
    leaves = [t.clone().requires_grad_(True) for t in args]
    y, h = triton_fn(*leaves)
    assert y.dtype == dtype and h.dtype == torch.promote_types(dtype, torch.float32)
    dy, dh = cotangents(args)
    grads = torch.autograd.grad((y.double() * dy).sum() + (h.double() * dh).sum(), leaves)
    expected = reference_grads(args, dy, dh)
    tol = TOL if dtype == torch.float64 else 2e-5
    for name, grad, leaf in zip(NAMES, grads, leaves):
        assert grad.dtype == leaf.dtype and rel(grad, expected[name]) <= tol, name
    y_r, h_r = ssd_scan_ref(*[t.double() for t in args])
    assert rel(y, y_r) <= tol and rel(h, h_r) <= tol


@triton_kernels
def test_triton_func_jvp_and_vmap_of_jvp_fold_directions_into_one_kernel_call(monkeypatch):
    args = tuple(inputs(29, G=2, batch=1, seed=16, device=DEVICE))
    g = torch.Generator().manual_seed(17)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=t.dtype).to(DEVICE) for t in args)
    (y, h), (yt, ht) = jvp(triton_fn, args, tangents)
    (y_r, h_r), (yt_r, ht_r) = jvp(ssd_scan_ref, args, tangents)
    for got, expected in ((y, y_r), (h, h_r), (yt, yt_r), (ht, ht_r)):
        assert rel(got, expected) <= TOL
    calls = []
    original = ssd_triton.ssd_tangent
    monkeypatch.setattr(ssd_triton, "ssd_tangent", lambda *a, **k: calls.append(k.get("K")) or original(*a, **k))
    x, dt, A, B, C, D, h0 = args
    xs = torch.randn(3, *x.shape, generator=g, dtype=x.dtype).to(DEVICE)
    hs = torch.randn(3, *h0.shape, generator=g, dtype=h0.dtype).to(DEVICE)

    def sweep(fn):
        tile = lambda xx, hh: fn(xx, dt, A, B, C, D, hh)  # noqa: E731
        return vmap(lambda xd, hd: jvp(tile, (x, h0), (xd, hd)), out_dims=(None, 0))(xs, hs)

    (_, _), (yt, ht) = sweep(triton_fn)
    assert calls == [3]
    (_, _), (yt_r, ht_r) = sweep(ssd_scan_ref)
    assert rel(yt, yt_r) <= TOL and rel(ht, ht_r) <= TOL


@triton_kernels
def test_triton_vmap_of_the_primal_and_of_vjp():
    x, *rest = inputs(20, H=2, P=4, N=4, G=1, seed=18, device=DEVICE)
    X = torch.randn(2, *x.shape, dtype=x.dtype).to(DEVICE)
    for got, expected in zip(vmap(lambda xx: triton_fn(xx, *rest))(X), vmap(lambda xx: ssd_scan_ref(xx, *rest))(X)):
        assert rel(got, expected) <= TOL
    _, pull = torch.func.vjp(lambda xx: triton_fn(xx, *rest)[0], x)
    _, pull_ref = torch.func.vjp(lambda xx: ssd_scan_ref(xx, *rest)[0], x)
    assert rel(vmap(pull)(X)[0], vmap(pull_ref)(X)[0]) <= TOL


@triton_kernels
def test_triton_saving_and_vjp_use_the_residual(monkeypatch):
    args = inputs(29, G=2, seed=19, device=DEVICE)
    x, dt, A, B, C, D, h0 = args
    y, h, residual = ssd_scan_saving(*args, backend="triton", chunk=8)
    assert residual.backend == "triton" and residual.starts.shape == (2, 4, 4, 3, 5)
    y_r, h_r = ssd_scan_ref(*args)
    assert rel(y, y_r) <= TOL and rel(h, h_r) <= TOL
    dy, dh = cotangents(args)
    monkeypatch.setattr(ssd_triton, "ssd_forward", None)  # the VJP must not run the forward again
    dx, ddt, dB, dC, dh0 = ssd_scan_vjp(residual, x, dt, A, B, C, D, dy, dh)
    expected = reference_grads(args, dy, dh)
    for name, got in zip(("x", "dt", "B", "C", "h0"), (dx, ddt, dB, dC, dh0)):
        assert rel(got, expected[name]) <= TOL, name
    with pytest.raises(ValueError, match="made by the 'triton' kernels"):
        ssd_scan_vjp(residual, x, dt, A, B, C, D, dy, dh, backend="cpu")
