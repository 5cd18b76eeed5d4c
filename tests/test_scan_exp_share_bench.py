"""bench/scan_exp_share.py (issue #31) runs as documented on a tiny shape, and its loop with the exp
computes the scan the shipped kernel computes."""

import json

import numpy as np
import pytest
import torch

from bench import scan_exp_share
from pgf_kernels.cpu_common import available

pytestmark = pytest.mark.skipif(not available(), reason="numba is not available")


def test_the_loop_with_exp_is_the_shipped_forward_scan():
    g = torch.Generator().manual_seed(3)
    L, E, N = 37, 2 * scan_exp_share.BLOCK, 4
    x, B, C = torch.randn(1, L, E, generator=g), torch.randn(1, L, N, generator=g), torch.randn(1, L, N, generator=g)
    delta = torch.rand(1, L, E, generator=g) * 0.5
    A = -torch.rand(E, N, generator=g) * 3
    with_exp, without_exp = scan_exp_share._loops()
    y = np.empty((1, L, E), dtype=np.float32)
    with_exp(delta.numpy(), x.numpy(), B.numpy(), C.numpy(), np.ascontiguousarray(A.numpy().T), y, scan_exp_share.BLOCK)
    from pgf_kernels import selective_scan_ref

    expected, _ = selective_scan_ref(x.double(), delta.double(), A.double(), B.double(), C.double())
    assert float((torch.from_numpy(y).double() - expected).abs().max() / expected.abs().max()) < 1e-5
    without_exp(delta.numpy(), x.numpy(), B.numpy(), C.numpy(), np.ascontiguousarray(A.numpy().T), y, scan_exp_share.BLOCK)
    assert not np.allclose(y, expected.numpy(), rtol=1e-3)  # the other copy is a cost probe, not the scan


def test_it_writes_records_and_the_exp_share(tmp_path, capsys):
    out = tmp_path / "share.json"
    payload = scan_exp_share.main(["--length", "64", "--E", "64", "--N", "4", "--repeats", "1", "--rounds", "2",
                                   "--out", str(out)])
    assert json.loads(out.read_text()) == payload
    assert [(r["round"], r["variant"]) for r in payload["records"]] == [
        (i, v) for i in range(2) for v in ("shipped forward kernel", "loop with exp", "loop without exp")]
    assert all(r["seconds"] > 0 and r["g_state_updates_per_s"] > 0 for r in payload["records"])
    median = payload["summary"]["median_seconds"]
    assert payload["summary"]["exp_share_of_loop"] == round(1 - median["loop without exp"] / median["loop with exp"], 3)
    assert len(capsys.readouterr().out.strip().splitlines()) == 6
