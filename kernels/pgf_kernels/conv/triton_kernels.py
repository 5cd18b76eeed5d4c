"""The causal conv's Triton kernels (forward, K tangents, input VJP) and their launchers.

Notation as `causal_conv1d_ref`, with W the conv width (the reference's K; here K counts tangent
directions, as in the scan's kernels): x (b, T, E), tail (b, E, W-1), weight (E, W), bias (E,),

    pre[:, t, e] = bias[e] + sum_w weight[e, w] u[:, t + w, e],   u = [tail^T ; x],   y = silu(pre).

In x's coordinates u[:, t + w] is x[:, t + w - (W-1)], or tail[:, :, t + w] where that index is
negative. Every kernel takes a [BLOCK_T, BLOCK_E] tile of (positions, channels) of one batch row
(channels innermost: contiguous in x), loops over the W taps (unrolled: W is a constexpr) and
reads x, the tail and every tangent through their strides (no copies: x may be a slice of a
wider projection). The VJP recomputes pre where it needs it: for its tile of positions i it needs
g = dy silu'(pre) at i + (W-1) - w for each tap w, so pre is recomputed W times per position (the
extra loads hit the cache) rather than stored in a scratch buffer. Sums are fp32 (fp64 for fp64
inputs); offsets int64. The tail (and its tangent) is rounded to x's dtype first, as the
reference's concatenation does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pgf_kernels.triton_common import alloc, sigmoid, work_dtypes


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def config(device: torch.device, T: int, E: int, K: int = 1, blocks: dict | None = None) -> dict:
    """Block sizes (powers of two) and warps. On CUDA a [t, e] tile of 4096 values per program
    (untuned guesses; the tangent kernel's [k, t, e] block uses t // k positions); in the
    interpreter bigger blocks mean fewer programs and less Python. `blocks` overrides any of
    "t", "e", "k" (tests force blocks that divide neither T nor E)."""
    if device.type == "cuda":
        cfg = {"t": min(_pow2(T), 32), "e": min(_pow2(E), 128), "k": min(_pow2(K), 4), "warps": 4}
    else:
        cfg = {"t": min(_pow2(T), 256), "e": min(_pow2(E), 64), "k": min(_pow2(K), 16), "warps": 1}
    for key, value in (blocks or {}).items():
        if key not in cfg or key == "warps":
            raise KeyError(f"unknown block setting {key!r}; known: t, e, k")
        if value < 1 or value & (value - 1):
            raise ValueError(f"block setting {key} must be a power of two, got {value}")
        cfg[key] = value
    return cfg


def check_shapes(x, tail, weight, bias) -> tuple[int, int, int, int]:
    """(b, T, E, W), or a ValueError."""
    if x.dim() != 3 or weight.dim() != 2:
        raise ValueError("causal conv1d: x must be (b, T, E) and weight (E, W)")
    b, T, E = x.shape
    W = weight.shape[1]
    if weight.shape != (E, W) or tail.shape != (b, E, W - 1) or (bias is not None and bias.shape != (E,)):
        raise ValueError(
            f"causal conv1d: expected tail ({b}, {E}, {W - 1}), weight ({E}, {W}), bias ({E},); got "
            f"{tuple(tail.shape)}, {tuple(weight.shape)}, {None if bias is None else tuple(bias.shape)}"
        )
    return b, T, E, W


def _strides(t: torch.Tensor | None, dims: int) -> tuple[int, ...]:
    return tuple(t.stride()) if t is not None else (0,) * dims


# ----------------------------------------------------------------------------------------------
# device functions


@triton.jit
def _u_tile(x_ptr, tail_ptr, base_x, base_tail, i, e, e_mask, T,
            sx_t, sx_e, st_e, st_w, XDT: tl.constexpr, WIDTH: tl.constexpr, ACC: tl.constexpr):
    """[BLOCK_T, BLOCK_E] of u at x-positions i (i < 0: the tail's column W-1+i); 0 outside [-(W-1), T)."""
    in_x = (i >= 0) & (i < T)
    v = tl.load(x_ptr + base_x + i[:, None] * sx_t + e[None, :] * sx_e,
                mask=in_x[:, None] & e_mask[None, :], other=0.0).to(ACC)
    if WIDTH > 1:
        in_tail = (i < 0) & (i > -WIDTH)
        v += tl.load(tail_ptr + base_tail + (i + (WIDTH - 1))[:, None] * st_w + e[None, :] * st_e,
                     mask=in_tail[:, None] & e_mask[None, :], other=0.0).to(XDT).to(ACC)
    return v


@triton.jit
def _pre_tile(x_ptr, tail_ptr, w_ptr, b_ptr, pb, t, e, e_mask, T,
              sx_b, sx_t, sx_e, st_b, st_e, st_w, sw_e, sw_w, sb_e,
              HAS_BIAS: tl.constexpr, WIDTH: tl.constexpr, ACC: tl.constexpr,
              BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr):
    """pre at positions t (any: rows outside [0, T) read zeros where u is absent) of batch row pb."""
    acc = tl.zeros([BLOCK_T, BLOCK_E], dtype=ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + e * sb_e, mask=e_mask, other=0.0).to(ACC)[None, :]
    for w in tl.static_range(WIDTH):
        wv = tl.load(w_ptr + e * sw_e + w * sw_w, mask=e_mask, other=0.0).to(ACC)
        acc += wv[None, :] * _u_tile(x_ptr, tail_ptr, pb * sx_b, pb * st_b, t + (w - (WIDTH - 1)), e, e_mask, T,
                                     sx_t, sx_e, st_e, st_w, x_ptr.dtype.element_ty, WIDTH, ACC)
    return acc


@triton.jit
def _silu_slope(pre):
    """silu'(pre) = sigmoid(pre) (1 + pre (1 - sigmoid(pre)))."""
    sig = sigmoid(pre)
    return sig * (1.0 + pre * (1.0 - sig))


# ----------------------------------------------------------------------------------------------
# kernels


@triton.jit
def _forward_kernel(
    x_ptr, tail_ptr, w_ptr, b_ptr, y_ptr,
    T, E,
    sx_b, sx_t, sx_e, st_b, st_e, st_w, sw_e, sw_w, sb_e,
    HAS_BIAS: tl.constexpr, WIDTH: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """Grid (T-blocks, E-blocks, b): y (b, T, E, contiguous) = silu(pre)."""
    pt = tl.program_id(0).to(tl.int64)
    pe = tl.program_id(1).to(tl.int64)
    pb = tl.program_id(2).to(tl.int64)
    t = pt * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    e = pe * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    e_mask = e < E
    pre = _pre_tile(x_ptr, tail_ptr, w_ptr, b_ptr, pb, t, e, e_mask, T,
                    sx_b, sx_t, sx_e, st_b, st_e, st_w, sw_e, sw_w, sb_e,
                    HAS_BIAS, WIDTH, ACC, BLOCK_T, BLOCK_E)
    y = pre * sigmoid(pre)
    tl.store(y_ptr + (pb * T + t[:, None]) * E + e[None, :], y.to(y_ptr.dtype.element_ty),
             mask=(t < T)[:, None] & e_mask[None, :])


@triton.jit
def _tangent_kernel(
    x_ptr, tail_ptr, w_ptr, b_ptr, xd_ptr, taild_ptr, wd_ptr, bd_ptr, yd_ptr,
    T, E, K, batch,
    sx_b, sx_t, sx_e, st_b, st_e, st_w, sw_e, sw_w, sb_e,
    dx_k, dx_b, dx_t, dx_e, dt_k, dt_b, dt_e, dt_w, dw_k, dw_e, dw_w, db_k, db_e,
    HAS_BIAS: tl.constexpr, HAS_XD: tl.constexpr, HAS_TAILD: tl.constexpr, HAS_WD: tl.constexpr,
    HAS_BD: tl.constexpr, WIDTH: tl.constexpr, ACC: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """Grid (T-blocks, E-blocks, b * K-blocks): y' (K, b, T, E, contiguous) = silu'(pre) pre' for
    BLOCK_K directions at once (pre computed once for them), with
    pre' = bias' + sum_w (weight[:, w] u'[t + w] + weight'[:, w] u[t + w]), u' = [tail'^T ; x'].
    Tangents (each optional): x' (K, b, T, E), tail' (K, b, E, W-1), weight' (K, E, W), bias' (K, E)."""
    pt = tl.program_id(0).to(tl.int64)
    pe = tl.program_id(1).to(tl.int64)
    pbk = tl.program_id(2).to(tl.int64)
    pb = pbk % batch
    kb = pbk // batch
    t = pt * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    e = pe * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    k = kb * BLOCK_K + tl.arange(0, BLOCK_K).to(tl.int64)
    e_mask = e < E
    k_mask = k < K
    ke_mask = k_mask[:, None] & e_mask[None, :]
    pre = tl.zeros([BLOCK_T, BLOCK_E], dtype=ACC)
    pre_d = tl.zeros([BLOCK_K, BLOCK_T, BLOCK_E], dtype=ACC)
    if HAS_BIAS:
        pre += tl.load(b_ptr + e * sb_e, mask=e_mask, other=0.0).to(ACC)[None, :]
    if HAS_BD:
        pre_d += tl.load(bd_ptr + k[:, None] * db_k + e[None, :] * db_e, mask=ke_mask, other=0.0).to(ACC)[:, None, :]
    for w in tl.static_range(WIDTH):
        i = t + (w - (WIDTH - 1))
        wv = tl.load(w_ptr + e * sw_e + w * sw_w, mask=e_mask, other=0.0).to(ACC)
        u = _u_tile(x_ptr, tail_ptr, pb * sx_b, pb * st_b, i, e, e_mask, T, sx_t, sx_e, st_e, st_w,
                    x_ptr.dtype.element_ty, WIDTH, ACC)
        pre += wv[None, :] * u
        if HAS_XD:
            in_x = (i >= 0) & (i < T)
            xd = tl.load(xd_ptr + k[:, None, None] * dx_k + pb * dx_b + i[None, :, None] * dx_t + e[None, None, :] * dx_e,
                         mask=k_mask[:, None, None] & in_x[None, :, None] & e_mask[None, None, :], other=0.0).to(ACC)
            pre_d += wv[None, None, :] * xd
        if HAS_TAILD:
            if WIDTH > 1:
                in_tail = (i < 0) & (i > -WIDTH)
                td = tl.load(taild_ptr + k[:, None, None] * dt_k + pb * dt_b + (i + (WIDTH - 1))[None, :, None] * dt_w
                             + e[None, None, :] * dt_e,
                             mask=k_mask[:, None, None] & in_tail[None, :, None] & e_mask[None, None, :],
                             other=0.0).to(x_ptr.dtype.element_ty).to(ACC)
                pre_d += wv[None, None, :] * td
        if HAS_WD:
            wd = tl.load(wd_ptr + k[:, None] * dw_k + e[None, :] * dw_e + w * dw_w, mask=ke_mask, other=0.0).to(ACC)
            pre_d += wd[:, None, :] * u[None, :, :]
    y_d = _silu_slope(pre)[None, :, :] * pre_d
    off = ((k[:, None, None] * batch + pb) * T + t[None, :, None]) * E + e[None, None, :]
    tl.store(yd_ptr + off, y_d.to(yd_ptr.dtype.element_ty),
             mask=k_mask[:, None, None] & (t < T)[None, :, None] & e_mask[None, None, :])


@triton.jit
def _input_vjp_kernel(
    x_ptr, tail_ptr, w_ptr, b_ptr, dy_ptr, dx_ptr, dtail_ptr,
    T, E,
    sx_b, sx_t, sx_e, st_b, st_e, st_w, sw_e, sw_w, sb_e, sg_b, sg_t, sg_e, sdt_b, sdt_e, sdt_w,
    HAS_BIAS: tl.constexpr, WIDTH: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """Grid (blocks of the T + W - 1 positions of u, E-blocks, b). For x-positions
    p in [-(W-1), T): du[p] = sum_w weight[:, w] g[p + (W-1) - w], g = dy silu'(pre) on [0, T)
    (0 elsewhere), pre recomputed. dx (b, T, E, contiguous) <- du[p >= 0]; dtail (b, E, W-1,
    strided) <- du[p < 0] at column W-1+p."""
    pt = tl.program_id(0).to(tl.int64)
    pe = tl.program_id(1).to(tl.int64)
    pb = tl.program_id(2).to(tl.int64)
    p = pt * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64) - (WIDTH - 1)
    e = pe * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    e_mask = e < E
    du = tl.zeros([BLOCK_T, BLOCK_E], dtype=ACC)
    for w in tl.static_range(WIDTH):
        t = p + (WIDTH - 1 - w)
        t_ok = (t >= 0) & (t < T)
        pre = _pre_tile(x_ptr, tail_ptr, w_ptr, b_ptr, pb, t, e, e_mask, T,
                        sx_b, sx_t, sx_e, st_b, st_e, st_w, sw_e, sw_w, sb_e,
                        HAS_BIAS, WIDTH, ACC, BLOCK_T, BLOCK_E)
        dy = tl.load(dy_ptr + pb * sg_b + t[:, None] * sg_t + e[None, :] * sg_e,
                     mask=t_ok[:, None] & e_mask[None, :], other=0.0).to(ACC)
        g = tl.where(t_ok[:, None], dy * _silu_slope(pre), 0.0)
        wv = tl.load(w_ptr + e * sw_e + w * sw_w, mask=e_mask, other=0.0).to(ACC)
        du += wv[None, :] * g
    tl.store(dx_ptr + (pb * T + p[:, None]) * E + e[None, :], du.to(dx_ptr.dtype.element_ty),
             mask=((p >= 0) & (p < T))[:, None] & e_mask[None, :])
    if WIDTH > 1:
        tl.store(dtail_ptr + pb * sdt_b + e[None, :] * sdt_e + (p + (WIDTH - 1))[:, None] * sdt_w,
                 du.to(dtail_ptr.dtype.element_ty), mask=(p < 0)[:, None] & e_mask[None, :])


# ----------------------------------------------------------------------------------------------
# launchers


def _primal_args(x, tail, weight, bias):
    return (*x.stride(), *tail.stride(), *weight.stride(), bias.stride(0) if bias is not None else 0)


def conv_forward(x, tail, weight, bias=None, blocks: dict | None = None) -> torch.Tensor:
    """silu(pre): (b, T, E) contiguous, in x's dtype."""
    b, T, E, W = check_shapes(x, tail, weight, bias)
    _, tl_work = work_dtypes(x)
    y = alloc((b, T, E), x.dtype, x.device)
    if y.numel() == 0:
        return y
    cfg = config(x.device, T, E, blocks=blocks)
    _forward_kernel[(triton.cdiv(T, cfg["t"]), triton.cdiv(E, cfg["e"]), b)](
        x, tail if W > 1 else x, weight, bias if bias is not None else x, y,
        T, E, *_primal_args(x, tail, weight, bias),
        HAS_BIAS=bias is not None, WIDTH=W, ACC=tl_work,
        BLOCK_T=cfg["t"], BLOCK_E=cfg["e"], num_warps=cfg["warps"],
    )
    return y


def conv_tangent(x, tail, weight, bias, tangents, K: int | None = None, blocks: dict | None = None) -> torch.Tensor:
    """y' (K, b, T, E) contiguous in x's dtype for K tangent directions sharing one primal.

    tangents = (x', tail', weight', bias'), each None (zero) or with a leading K: x' (K, b, T, E),
    tail' (K, b, E, W-1), weight' (K, E, W), bias' (K, E); any strides (expanded ones too)."""
    b, T, E, W = check_shapes(x, tail, weight, bias)
    xd, taild, wd, bd = tangents
    present = [t for t in tangents if t is not None]
    if K is None:
        if not present:
            raise ValueError("K must be given when every tangent is None")
        K = present[0].shape[0]
    expected = ((K, b, T, E), (K, b, E, W - 1), (K, E, W), (K, E))
    for name, t, shape in zip(("x'", "tail'", "weight'", "bias'"), tangents, expected):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"causal conv1d tangent {name}: expected {shape}, got {tuple(t.shape)}")
    if W == 1:
        taild = None
    _, tl_work = work_dtypes(x)
    y_d = alloc((K, b, T, E), x.dtype, x.device)
    if y_d.numel() == 0:
        return y_d
    if not present or all(t is None for t in (xd, taild, wd, bd)):
        return y_d.zero_()
    cfg = config(x.device, T, E, K=K, blocks=blocks)
    BK = cfg["k"]
    BT = cfg["t"] if (blocks and "t" in blocks) or x.device.type != "cuda" else max(1, cfg["t"] // BK)
    ptr = lambda t: t if t is not None else x  # noqa: E731
    _tangent_kernel[(triton.cdiv(T, BT), triton.cdiv(E, cfg["e"]), b * triton.cdiv(K, BK))](
        x, tail if W > 1 else x, weight, ptr(bias), ptr(xd), ptr(taild), ptr(wd), ptr(bd), y_d,
        T, E, K, b, *_primal_args(x, tail, weight, bias),
        *_strides(xd, 4), *_strides(taild, 4), *_strides(wd, 3), *_strides(bd, 2),
        HAS_BIAS=bias is not None, HAS_XD=xd is not None, HAS_TAILD=taild is not None,
        HAS_WD=wd is not None, HAS_BD=bd is not None, WIDTH=W, ACC=tl_work,
        BLOCK_K=BK, BLOCK_T=BT, BLOCK_E=cfg["e"], num_warps=cfg["warps"],
    )
    return y_d


def conv_input_vjp(x, tail, weight, bias, dy, blocks: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx (b, T, E) contiguous in x's dtype, dtail (b, E, W-1) contiguous in tail's dtype) for
    the cotangent dy (b, T, E, any strides) of silu(pre)."""
    b, T, E, W = check_shapes(x, tail, weight, bias)
    if tuple(dy.shape) != (b, T, E):
        raise ValueError(f"causal conv1d: dy must be ({b}, {T}, {E}), got {tuple(dy.shape)}")
    _, tl_work = work_dtypes(x)
    dx = alloc((b, T, E), x.dtype, x.device)
    dtail = alloc((b, E, W - 1), tail.dtype, x.device)
    if b * E * (T + W - 1) == 0:
        return dx, dtail
    if T == 0:  # nothing reads the tail
        return dx, dtail.zero_()
    cfg = config(x.device, T + W - 1, E, blocks=blocks)
    _input_vjp_kernel[(triton.cdiv(T + W - 1, cfg["t"]), triton.cdiv(E, cfg["e"]), b)](
        x, tail if W > 1 else x, weight, bias if bias is not None else x, dy, dx, dtail if W > 1 else dx,
        T, E, *_primal_args(x, tail, weight, bias), *dy.stride(), *_strides(dtail if W > 1 else None, 3),
        HAS_BIAS=bias is not None, WIDTH=W, ACC=tl_work,
        BLOCK_T=cfg["t"], BLOCK_E=cfg["e"], num_warps=cfg["warps"],
    )
    return dx, dtail
