"""Shared pytest setup.

Without CUDA, the Triton kernels can only run in Triton's interpreter, which is chosen when a
kernel is defined (at import), so TRITON_INTERPRET=1 is set here, before any test module
imports triton or pgf_kernels. With CUDA it is left alone, so the same tests run the compiled
kernels on the GPU.

The interpreter runs `tl.associative_scan` with a custom combine function one element at a time
(a Python call of the combine function per element of the block: most of the time of the scan
kernels' tests). `_scan_a_slice_at_a_time` below runs the same sequential scan one position of
the scanned axis at a time, the combine function applied to the whole slice: the same operations
on the same values in the same order (a combine function is elementwise, as Triton requires), so
the same numbers (tests/test_interpreter_speedups.py checks it against the interpreter's own).

It also patches Triton's language for the interpreter at the start of every kernel launch and
again at every call of a `@triton.jit` device function inside it (the SSD kernels call many):
the same modules with the same replacements, which the launch's own patch undoes when it ends.
`_no_second_patch_inside_a_launch` skips the repeat when the launch already patched every module
the device function sees (the same numbers: tests/test_interpreter_speedups.py). Set
PGF_TEST_STOCK_INTERPRETER=1 to run the interpreter unchanged.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


def _scan_a_slice_at_a_time(self, input):
    """Triton's interpreter ScanOps.generic_scan, one slice along the axis per combine call."""
    import numpy as np
    import triton.language as tl

    shape = input[0].handle.data.shape
    data = [arg.handle.data for arg in input]
    out = [np.zeros(shape, dtype=d.dtype) for d in data]

    def at(t):
        index = [slice(None)] * len(shape)
        index[self.axis] = slice(t, t + 1)  # keeps the axis (size 1): every operand stays a block
        return tuple(index)

    for t in range(shape[self.axis]):
        here = at(t)
        if t == 0:
            for o, d in zip(out, data):
                o[here] = d[here]
            continue
        before = at(t - 1)
        acc = tuple(self.to_tensor(o[before], arg.dtype) for o, arg in zip(out, input))
        new = tuple(self.to_tensor(d[here], arg.dtype) for d, arg in zip(data, input))
        combined = self.combine_fn.fn(*acc, *new)
        combined = combined if isinstance(combined, tuple) else (combined,)
        for o, value in zip(out, combined):
            o[here] = value.handle.data if isinstance(value, tl.core.tensor) else value
    return [self.to_tensor(o, arg.dtype) for o, arg in zip(out, input)]


def _no_second_patch_inside_a_launch(interpreter):
    """Wrap the interpreter's _patch_lang and GridExecutor.__call__: inside a launch, a device
    function whose language modules the launch has patched is called without patching them again."""
    stock_patch_lang, stock_launch = interpreter._patch_lang, interpreter.GridExecutor.__call__
    launch = {"running": False, "patched": None}

    class Unchanged:
        def restore(self):
            pass

    def languages(fn):
        return {id(value) for value in fn.__globals__.values() if value is interpreter.tl or value is interpreter.tl.core}

    def patch_lang(fn):
        if launch["running"] and launch["patched"] is not None and languages(fn) <= launch["patched"]:
            return Unchanged()
        scope = stock_patch_lang(fn)
        if launch["running"] and launch["patched"] is None:  # the launch's own patch (its first)
            launch["patched"] = languages(fn)
        return scope

    def run_launch(self, *args, **kwargs):
        outer = dict(launch)
        launch.update(running=True, patched=None)
        try:
            return stock_launch(self, *args, **kwargs)
        finally:
            launch.update(outer)

    interpreter._patch_lang = patch_lang
    interpreter.GridExecutor.__call__ = run_launch
    interpreter.stock_patch_lang, interpreter.GridExecutor.stock_call = stock_patch_lang, stock_launch


def _faster_interpreter():
    if os.environ.get("TRITON_INTERPRET") != "1" or os.environ.get("PGF_TEST_STOCK_INTERPRETER") == "1":
        return
    try:
        from triton.runtime import interpreter
    except ImportError:  # no Triton (it is a dependency on Linux only)
        return
    scan_ops = getattr(interpreter, "ScanOps", None)
    if scan_ops is not None and hasattr(scan_ops, "generic_scan") and hasattr(scan_ops, "to_tensor"):
        scan_ops.stock_generic_scan = scan_ops.generic_scan
        scan_ops.generic_scan = _scan_a_slice_at_a_time
    if all(hasattr(interpreter, name) for name in ("_patch_lang", "GridExecutor", "InterpretedFunction", "tl")):
        _no_second_patch_inside_a_launch(interpreter)
    # otherwise another Triton: its interpreter as it is


_faster_interpreter()
