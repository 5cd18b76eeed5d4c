"""The Triton selective-scan kernels equal the PyTorch reference: outputs, input gradients,
tangents, through every registration path (autograd, torch.func.jvp, vmap of jvp) and inside
the PGF engines.

On a machine with CUDA every test runs the compiled kernels on the GPU (`pytest
tests/test_kernels_triton.py`); without it they run in Triton's interpreter on CPU
(conftest.py sets TRITON_INTERPRET=1), which is slow, hence the small channel counts.
Every buffer the launchers allocate is filled with NaN first, so a missed write fails.
Interpreted, the file takes over a minute: it is `slow` on CPU (`pytest -m "not slow"` skips it
there; CI runs it).
"""

import pytest
import torch
from torch.func import jvp, vjp, vmap

pytest.importorskip("triton")

from helpers import build, onehot  # noqa: E402
from pgf.engine.tiled import PgfEngine  # noqa: E402
from pgf.models.targets import parse_target  # noqa: E402
from pgf.workflows.effect import output_function  # noqa: E402
from pgf_kernels import (  # noqa: E402
    kernel_backend,
    ops,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
    set_kernel_backend,
    get_kernel_backend,
    triton_scan,
    triton_unavailable_reason,
)

pytestmark = [] if torch.cuda.is_available() else [pytest.mark.slow]

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
RUNNABLE = DEVICE.type == "cuda" or triton_scan.interpreted()
needs_kernels = pytest.mark.skipif(not RUNNABLE, reason="no CUDA and the Triton interpreter is off")
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
NAMES = ("x", "delta", "A", "B", "C", "D", "z", "h0")
MANY_BLOCKS = {"fwd_e": 2, "bwd_e": 2, "bwd_groups": 2, "tan_e": 2, "k": 2, "carry_c": 2, "carry_e": 2}


@pytest.fixture(autouse=True)
def nan_scratch():
    """Every output and scratch buffer of the launchers starts as NaN."""
    previous, triton_scan.NAN_FILL = triton_scan.NAN_FILL, True
    yield
    triton_scan.NAN_FILL = previous


def make_inputs(L, E, N, batch, dtype=torch.float64, seed=0, decay="normal", with_z=True, with_D=True, with_h0=True):
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


def rel(got, expected):
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


# cases: (L, E, N, batch, chunk, block overrides); chunks never divide L
CASES = [
    (1, 6, 4, 2, 16, None),
    (63, 6, 4, 2, 12, MANY_BLOCKS),
    (1000, 3, 2, 2, 64, None),
    (4097, 2, 2, 1, 64, None),
]
CASE_IDS = [f"L{c[0]}" for c in CASES]


# --------------------------------------------------------------------------------------------
# the kernels, called directly


@needs_kernels
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("full", [True, False], ids=["z-D-h0", "bare"])
def test_forward_kernel(case, full):
    L, E, N, batch, chunk, blocks = case
    inputs = make_inputs(L, E, N, batch, with_z=full, with_D=full, with_h0=full)
    y, h, starts = triton_scan.scan_forward(*inputs, chunk=chunk, blocks=blocks)
    y_ref, h_ref = selective_scan_ref(*inputs)
    assert rel(y, y_ref) <= 1e-10 and rel(h, h_ref) <= 1e-10
    assert starts.shape == (batch, -(-L // chunk), E, N)
    if L > chunk:  # the saved start of chunk 1 is the state after the first chunk
        head = [t if t is None or NAMES[i] in ("A", "D", "h0") else t[:, :chunk] for i, t in enumerate(inputs)]
        assert rel(starts[:, 1], selective_scan_ref(*head)[1]) <= 1e-10


@needs_kernels
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("full", [True, False], ids=["z-D-h0", "bare"])
def test_backward_kernel(case, full):
    L, E, N, batch, chunk, blocks = case
    inputs = make_inputs(L, E, N, batch, with_z=full, with_D=full, with_h0=full, seed=1)
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
        assert rel(got[name], value) <= 1e-10, name


TANGENT_CASES = [
    (CASES[0], 3),
    (CASES[1], 1),
    (CASES[1], 3),
    (CASES[2], 3),
    (CASES[3], 1),
]


@needs_kernels
@pytest.mark.parametrize("case, K", TANGENT_CASES, ids=[f"L{c[0]}-K{k}" for c, k in TANGENT_CASES])
def test_tangent_kernel(case, K):
    """Tangents of every input (A and D included), K directions sharing one primal."""
    L, E, N, batch, chunk, blocks = case
    inputs = make_inputs(L, E, N, batch, seed=3)
    g = torch.Generator().manual_seed(4)
    tangents = [torch.randn(K, *t.shape, generator=g, dtype=torch.float64).to(DEVICE) for t in inputs]
    y, h, y_t, h_t = triton_scan.scan_tangent(*inputs, tangents, chunk=chunk, blocks=blocks)
    y_ref, h_ref = selective_scan_ref(*inputs)
    assert rel(y, y_ref) <= 1e-10 and rel(h, h_ref) <= 1e-10
    for k in range(K):
        _, (y_t_ref, h_t_ref) = jvp(selective_scan_ref, tuple(inputs), tuple(t[k] for t in tangents))
        assert rel(y_t[k], y_t_ref) <= 1e-10 and rel(h_t[k], h_t_ref) <= 1e-10


@needs_kernels
def test_tangent_kernel_partial_tangents_and_no_z():
    """Only x' and h0' (the engine's pattern), no z, no D; and only delta' with no h0."""
    inputs = make_inputs(63, 5, 3, 2, seed=5, with_z=False, with_D=False)
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
        assert rel(y_t[k], y_t_ref) <= 1e-10 and rel(h_t[k], h_t_ref) <= 1e-10
    no_h0 = inputs[:7] + [None]
    dt = torch.randn(1, *inputs[1].shape, generator=g, dtype=torch.float64).to(DEVICE)
    _, _, y_t, h_t = triton_scan.scan_tangent(*no_h0, (None, dt, None, None, None, None, None, None), chunk=16)
    _, (y_t_ref, h_t_ref) = jvp(lambda d: selective_scan_ref(*no_h0[:1], d, *no_h0[2:]), (inputs[1],), (dt[0],))
    assert rel(y_t[0], y_t_ref) <= 1e-10 and rel(h_t[0], h_t_ref) <= 1e-10


@needs_kernels
@pytest.mark.parametrize("decay", ["stiff", "tiny"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_stiff_and_tiny_decays(decay, dtype):
    """delta*|A| up to 50 per step (cumulative decays far beyond exp's range) and ~1e-4:
    forward, adjoint and tangent stay finite and equal the fp64 reference."""
    inputs = make_inputs(300, 4, 4, 1, dtype=dtype, seed=7, decay=decay)
    if decay == "stiff":
        assert float((inputs[1][..., None] * inputs[2].abs()).max()) >= 49.9
    x, delta, A, B, C, D, z, h0 = inputs
    y, h, starts = triton_scan.scan_forward(*inputs, chunk=64)
    y_ref, h_ref = selective_scan_ref(*[t.double() for t in inputs])
    assert rel(y, y_ref) <= TOL[dtype] and rel(h, h_ref) <= TOL[dtype]
    g = torch.Generator().manual_seed(8)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(DEVICE)
    dh = torch.randn(h.shape, generator=g, dtype=torch.float64).to(DEVICE)
    dx, ddelta, dB, dC, dz, dh0 = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy.to(dtype), dh.to(dtype), chunk=64)
    expected = reference_vjp(inputs, dy, dh)
    for name, value in zip(("x", "delta", "B", "C", "z", "h0"), (dx, ddelta, dB, dC, dz, dh0)):
        assert rel(value, expected[name]) <= TOL[dtype], name
    tangents = [torch.randn(1, *t.shape, generator=g, dtype=torch.float64).to(DEVICE, dtype) for t in inputs]
    tangents[2] = tangents[5] = None
    _, _, y_t, h_t = triton_scan.scan_tangent(*inputs, tangents, chunk=64)
    keep = (0, 1, 3, 4, 6, 7)
    _, (y_t_ref, h_t_ref) = jvp(
        lambda x, d, b, c, zz, hh: selective_scan_ref(x, d, A.double(), b, c, D.double(), zz, hh),
        tuple(inputs[i].double() for i in keep), tuple(tangents[i][0].double() for i in keep),
    )
    assert rel(y_t[0], y_t_ref) <= TOL[dtype] and rel(h_t[0], h_t_ref) <= TOL[dtype]


@needs_kernels
def test_bf16_inputs():
    """bf16 activations, fp32 A, D and state: fp32 arithmetic inside, outputs in bf16
    (one bf16 rounding off the fp32 reference; the interpreter truncates)."""
    inputs = make_inputs(150, 4, 4, 2, dtype=torch.float32, seed=9)
    for i in (0, 1, 3, 4, 6):
        inputs[i] = inputs[i].to(torch.bfloat16)
    x, delta, A, B, C, D, z, h0 = inputs
    y, h, starts = triton_scan.scan_forward(*inputs, chunk=32)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32
    y_ref, h_ref = selective_scan_ref(*[t.double() for t in inputs])
    assert rel(y, y_ref) <= 1e-2 and rel(h, h_ref) <= 1e-5
    g = torch.Generator().manual_seed(10)
    dy = torch.randn(y.shape, generator=g).to(DEVICE, torch.bfloat16)
    dh = torch.randn(h.shape, generator=g).to(DEVICE)
    grads = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh, chunk=32)
    expected = reference_vjp(inputs, dy, dh)
    for name, value, source in zip(("x", "delta", "B", "C", "z", "h0"), grads, (x, delta, B, C, z, h0)):
        assert value.dtype == source.dtype
        assert rel(value, expected[name]) <= 1e-2, name
    tangents = (torch.randn(2, *x.shape, generator=g).to(DEVICE, torch.bfloat16), None, None, None, None, None, None,
                torch.randn(2, *h0.shape, generator=g).to(DEVICE))
    _, _, y_t, h_t = triton_scan.scan_tangent(*inputs, tangents, chunk=32)
    assert y_t.dtype == torch.bfloat16 and h_t.dtype == torch.float32
    for k in range(2):
        _, (y_t_ref, h_t_ref) = jvp(lambda xx, hh: selective_scan_ref(xx, *[t.double() for t in inputs[1:7]], hh),
                                    (x.double(), h0.double()), (tangents[0][k].double(), tangents[7][k].double()))
        assert rel(y_t[k], y_t_ref) <= 1e-2 and rel(h_t[k], h_t_ref) <= 1e-5


@needs_kernels
def test_backward_is_deterministic():
    """Two adjoint runs are bit-identical (dB, dC reduced over channels without atomics)."""
    inputs = make_inputs(150, 6, 4, 2, dtype=torch.float32, seed=11)
    x, delta, A, B, C, D, z, h0 = inputs
    _, _, starts = triton_scan.scan_forward(*inputs, chunk=32, blocks={"fwd_e": 2})
    dy, dh = torch.randn(2, 150, 6, device=DEVICE), torch.randn(2, 6, 4, device=DEVICE)
    blocks = {"bwd_e": 2, "bwd_groups": 2, "carry_c": 2}
    first = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh, chunk=32, blocks=blocks)
    second = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh, chunk=32, blocks=blocks)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@needs_kernels
def test_chunk_starts_must_match_chunk():
    inputs = make_inputs(40, 2, 2, 1)
    x, delta, A, B, C, D, z, h0 = inputs
    _, _, starts = triton_scan.scan_forward(*inputs, chunk=16)
    with pytest.raises(ValueError, match="chunk starts"):
        triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, None, None, chunk=8)


# --------------------------------------------------------------------------------------------
# registration: autograd, torch.func.jvp, vmap


def triton_scan_fn(*inputs, chunk=16):
    return selective_scan(*inputs, chunk=chunk, backend="triton")


@needs_kernels
@pytest.mark.parametrize("L, dtype, full", [(63, torch.float64, True), (63, torch.float64, False), (300, torch.float32, True)],
                         ids=["L63-fp64", "L63-fp64-bare", "L300-fp32"])
def test_autograd_matches_reference(L, dtype, full):
    inputs = make_inputs(L, 4, 3, 2, dtype=dtype, seed=12, with_z=full, with_D=full, with_h0=full)
    leaves = [None if t is None else t.clone().requires_grad_(NAMES[i] not in ("A", "D")) for i, t in enumerate(inputs)]
    y, h = triton_scan_fn(*leaves)
    g = torch.Generator().manual_seed(13)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(DEVICE)
    dh = torch.randn(h.shape, generator=g, dtype=torch.float64).to(DEVICE)
    wanted = [t for i, t in enumerate(leaves) if t is not None and t.requires_grad]
    grads = torch.autograd.grad((y.double() * dy).sum() + (h.double() * dh).sum(), wanted)
    expected = reference_vjp(inputs, dy, dh)
    for name, grad in zip([NAMES[i] for i, t in enumerate(leaves) if t is not None and t.requires_grad], grads):
        assert rel(grad, expected[name]) <= TOL[dtype], name
    y_ref, h_ref = selective_scan_ref(*[None if t is None else t.double() for t in inputs])
    assert rel(y, y_ref) <= TOL[dtype] and rel(h, h_ref) <= TOL[dtype]


@needs_kernels
def test_func_jvp_matches_reference():
    inputs = tuple(make_inputs(63, 4, 3, 2, seed=14))
    g = torch.Generator().manual_seed(15)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=t.dtype).to(DEVICE) for t in inputs)
    (y, h), (y_t, h_t) = jvp(triton_scan_fn, inputs, tangents)
    (y_ref, h_ref), (y_t_ref, h_t_ref) = jvp(selective_scan_ref, inputs, tangents)
    for got, expected in ((y, y_ref), (h, h_ref), (y_t, y_t_ref), (h_t, h_t_ref)):
        assert rel(got, expected) <= 1e-10


@needs_kernels
@pytest.mark.parametrize("V", [1, 3])
def test_vmap_of_jvp_folds_directions_into_one_kernel_call(V, monkeypatch):
    """The tangent engine's pattern: one unbatched primal, V batched tangents (of x and the
    carried state). The tangent kernel runs once, with K = V directions."""
    inputs = make_inputs(63, 4, 3, 1, seed=16)
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
        assert rel(got, expected) <= 1e-10


@needs_kernels
def test_vmap_general_rules():
    """Batched primals (folded into the batch), vmap of jvp with batched primals (per-slice
    fallback), and vmap of vjp (the adjoint under vmap)."""
    inputs = make_inputs(40, 3, 2, 2, seed=18)
    x, rest = inputs[0], inputs[1:]
    g = torch.Generator().manual_seed(19)
    X = torch.randn(2, *x.shape, generator=g, dtype=torch.float64).to(DEVICE)
    T = torch.randn(2, *x.shape, generator=g, dtype=torch.float64).to(DEVICE)
    fn_got = lambda xx: triton_scan_fn(xx, *rest)  # noqa: E731
    fn_ref = lambda xx: selective_scan_ref(xx, *rest)  # noqa: E731
    for got, expected in zip(vmap(fn_got)(X), vmap(fn_ref)(X)):
        assert rel(got, expected) <= 1e-10
    got = vmap(lambda xx, tt: jvp(fn_got, (xx,), (tt,)))(X, T)
    expected = vmap(lambda xx, tt: jvp(fn_ref, (xx,), (tt,)))(X, T)
    for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
        assert rel(a, b) <= 1e-10
    _, pull = vjp(lambda xx: fn_got(xx)[0], x)
    _, pull_ref = vjp(lambda xx: fn_ref(xx)[0], x)
    assert rel(vmap(pull)(T)[0], vmap(pull_ref)(T)[0]) <= 1e-10


@needs_kernels
def test_parameter_gradients_are_refused():
    inputs = make_inputs(20, 2, 2, 1)
    for index in (2, 5):  # A, D
        leaves = list(inputs)
        leaves[index] = leaves[index].clone().requires_grad_(True)
        y, _ = triton_scan_fn(*leaves)
        with pytest.raises(RuntimeError, match="input gradients only"):
            y.sum().backward()
        # auto never picks compiled kernels when A or D needs a gradient
        assert resolve_backend(leaves[0], leaves[2], leaves[5], "auto") == "reference"


# --------------------------------------------------------------------------------------------
# dispatch


def test_auto_picks_compiled_cpu_kernels_on_cpu_and_triton_on_cuda():
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    assert resolve_backend(x, A, None, "auto") == "cpu"
    assert resolve_backend(x, A, None, "reference") == "reference"
    if torch.cuda.is_available():
        assert resolve_backend(x.cuda(), A.cuda(), None, "auto") == "triton"
        with torch.no_grad():  # no gradient wanted: parameters requiring grad do not matter
            assert resolve_backend(x.cuda(), A.cuda().requires_grad_(), None, "auto") == "triton"


def test_forced_triton_without_a_gpu_is_a_clear_error(monkeypatch):
    x, A = torch.zeros(1, 2, 2), torch.zeros(2, 2)
    monkeypatch.setattr(triton_scan, "interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        resolve_backend(x, A, None, "triton")
    with pytest.raises(RuntimeError, match="need CUDA tensors"), kernel_backend("triton"):
        selective_scan(x, x, A, x, x)
    monkeypatch.setattr(ops, "_triton_module", lambda: None)
    assert "not installed" in triton_unavailable_reason(torch.device("cuda"))
    with pytest.raises(RuntimeError, match="not installed"):
        resolve_backend(x, A, None, "triton")
    monkeypatch.setattr(ops, "_cpu_module", lambda: None)
    assert resolve_backend(x, A, None, "auto") == "reference"


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="reference, triton, auto"):
        set_kernel_backend("cuda")
    with pytest.raises(ValueError, match="reference, triton, auto"):
        selective_scan(*make_inputs(3, 2, 2, 1), backend="fast")
    with pytest.raises(ValueError), kernel_backend("nope"):
        pass


def test_backend_default_and_context_manager():
    assert get_kernel_backend() == "auto"
    with kernel_backend("reference"):
        assert get_kernel_backend() == "reference"
        with kernel_backend("triton"):
            assert get_kernel_backend() == "triton"
        assert get_kernel_backend() == "reference"
    assert get_kernel_backend() == "auto"
    set_kernel_backend("reference")
    try:
        assert get_kernel_backend() == "reference"
    finally:
        set_kernel_backend("auto")


def test_interpreter_flag_follows_conftest():
    """conftest.py sets TRITON_INTERPRET=1 without CUDA; the kernels were built for it."""
    assert triton_scan.interpreted() == (not torch.cuda.is_available())


# --------------------------------------------------------------------------------------------
# the engines on a whole model


@needs_kernels
def test_adjoint_engine_gradient_with_triton_kernels():
    model = build("track-bi").double().to(DEVICE)
    x = onehot(100).to(DEVICE)
    target = parse_target("sum:b", model)
    with kernel_backend("reference"):
        expected = PgfEngine(tile=32).gradient(model, x, target.readout([0]))
    with kernel_backend("triton"):
        got = PgfEngine(tile=32).gradient(model, x, target.readout([0]))
    assert rel(got.gradient, expected.gradient) <= 1e-10
    assert rel(got.target_value, expected.target_value) <= 1e-10


@needs_kernels
@pytest.mark.parametrize("kind", ["track-causal", "track-bi"])
def test_tangent_engine_jvp_with_triton_kernels(kind):
    """Causal models stream all layers per tile, bidirectional ones go layer by layer through
    vmap(jvp(scan.tile)) with an unbatched primal: both fold the directions into K."""
    model = build(kind).double().to(DEVICE)
    output, _, _ = output_function(model)
    x = onehot(80).to(DEVICE)
    directions = torch.randn(2, 1, 80, 4, generator=torch.Generator().manual_seed(20), dtype=torch.float64).to(DEVICE)
    with kernel_backend("reference"):
        expected_primal, expected_tangent = PgfEngine(tile=32).tangent(model, x, directions, output)
    with kernel_backend("triton"):
        primal, tangent = PgfEngine(tile=32).tangent(model, x, directions, output)
    assert rel(primal, expected_primal) <= 1e-10
    assert rel(tangent, expected_tangent) <= 1e-10
