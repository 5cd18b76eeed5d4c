"""bench/ssd_scan.py and bench/mamba2_model.py (issue #30): the scan comparison end to end on a tiny
length, and the Mamba-2 model bench's work count against the model it builds."""

import json

from bench import mamba2_model, ssd_scan


def test_ssd_scan_bench_writes_side_by_side_records(tmp_path):
    out = tmp_path / "ssd.json"
    payload = ssd_scan.main(["--lengths", "256", "--out", str(out)])
    assert json.loads(out.read_text()) == payload
    records = payload["records"]
    assert [(r["scan"], r["mode"]) for r in records] == [("ssd", "forward"), ("mamba1", "forward"),
                                                         ("ssd", "vjp"), ("mamba1", "vjp"), ("ssd", "vjp-autograd")]
    assert all(r["seconds"] > 0 and 0 < r["flop_fraction"] < 2 for r in records[:4])
    assert records[4]["seconds_over_vjp"] == round(records[4]["seconds"] / records[2]["seconds"], 2)
    assert records[0]["seconds_over_mamba1"] == round(records[0]["seconds"] / records[1]["seconds"], 2)


def test_the_model_bench_counts_the_shape_it_builds():
    """The work count's shape is the model's: 24 layers of PlantCAD2-Small-sized Mamba-2 mixers, RC-equivariant."""
    import torch

    from pgf.models.caduceus import CaduceusLM
    from pgf.models.mamba2 import Mamba2Mixer

    with torch.device("meta"):
        model = CaduceusLM(mamba2_model.plantcad2_small_config())
    mixers = {id(m): m for m in model.modules() if isinstance(m, Mamba2Mixer)}
    assert len(mixers) == 2 * 24  # a forward and a reverse mixer per layer (projections tied)
    mixer = next(iter(mixers.values()))
    assert (mixer.d_model, mixer.nheads, mixer.headdim, mixer.d_state, mixer.ngroups) == (768, 24, 64, 128, 1)
    assert model.config.rcps
    D, E, N, H, P, T = 768, 1536, 128, 24, 64, mamba2_model.CHUNK
    per_call = 2 * D * (2 * E + 2 * N + H) + 2 * 4 * (E + 2 * N) + 2 * T * (N + H * P) + 6 * H * P * N + 2 * E * D
    assert mamba2_model.flops_per_position() == per_call * 4 * 24


def test_pairs_alternate_the_engines_and_each_ratio_is_over_the_forward_just_before(tmp_path, monkeypatch):
    import torch

    from bench import throughput

    seconds = iter([10.0, 27.0, 12.0, 30.0, 11.0, 36.0])  # forward, gradient, in turn
    ran = []

    def fake_case(spec, timeout):
        ran.append((spec["engine"], spec["length"]))
        return {**spec, "seconds": next(seconds), "peak_bytes": 1}

    monkeypatch.setattr(throughput, "run_case", fake_case)
    monkeypatch.setattr(throughput, "calibrate", lambda device: {"matmul_flop_per_s": 1e11})
    monkeypatch.setattr(mamba2_model, "build_plantcad2_small", lambda: torch.nn.Linear(2, 2))
    out = tmp_path / "model.json"
    payload = mamba2_model.main(["--lengths", "64", "--autograd-lengths", "", "--pairs", "3", "--out", str(out)])
    assert ran == [("forward", 64), ("gradient", 64)] * 3
    assert [r["times_forward"] for r in payload["records"] if r["engine"] == "gradient"] == [2.7, 2.5, 3.27]
    assert payload["gradient_over_forward"] == {"64": {"pairs": [2.7, 2.5, 3.27], "median": 2.7}}
    assert json.loads(out.read_text()) == payload
