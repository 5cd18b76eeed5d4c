"""bench/throughput.py (issue #21): the CPU run end to end on tiny lengths, the CUDA options' guards."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import throughput

ROOT = Path(__file__).resolve().parents[1]


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--device", "cuda", "--no-save"])
    with pytest.raises(SystemExit) as exit_:
        throughput.main()
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--device cuda" in lines[0] and "Traceback" not in err


def test_default_output_files():
    assert throughput.results_path("cpu", "cpu (x86_64)").name == "cpu-2core-throughput.json"
    assert throughput.results_path("cuda", "NVIDIA H200").name == "nvidia-h200-throughput.json"
    assert throughput.results_path("cuda", "NVIDIA H100 80GB HBM3").name == "nvidia-h100-80gb-hbm3-throughput.json"
    assert throughput.CADUCEUS_CONFIGS["large"] == {"d_model": 256, "n_layer": 16}


@pytest.mark.slow
def test_cpu_run_writes_the_records(tmp_path):
    out = tmp_path / "throughput.json"
    command = [sys.executable, "-m", "bench.throughput", "--device", "cpu", "--lengths", "512", "--caduceus-lengths", "",
               "--paper-lengths", "", "--engines", "forward,gradient", "--kernels", "cpu", "--no-save", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    environment, calibration, records = result["environment"], result["calibration"], result["records"]
    assert environment["device"] == "cpu" and environment["device_name"] and environment["precision"] == "fp32"
    assert environment["caduceus_config"]["name"] == "small"
    assert calibration["matmul_flop_per_s"] > 0 and calibration["copy_bytes_per_s"] > 0
    assert result["total_seconds"] > 0
    assert [(r["model"], r["length"], r["engine"], r["kernels"]) for r in records] == [
        ("builtin", 512, "forward", "cpu"), ("builtin", 512, "gradient", "cpu")]
    for record in records:
        assert record["precision"] == "fp32" and record["peak_kind"] == "rss"
        for field in ("seconds", "bp_per_s", "peak_bytes", "flops_per_bp", "bytes_per_bp", "flop_fraction",
                      "bandwidth_fraction"):
            assert record[field] > 0, (field, record)
        if sys.platform.startswith("linux"):  # the case's own memory, over what the process held before it
            assert 0 < record["baseline_bytes"] <= record["peak_bytes"]
            assert record["case_bytes"] == record["peak_bytes"] - record["baseline_bytes"]


def test_profile_names_the_adjoint_phases():
    """bench.profile_engines reads the adjoint's record_function labels and the top operators."""
    from bench import profile_engines

    model = throughput.build_model("builtin")
    record = profile_engines.profile_engine(model, "gradient", 1024, top=5, backend="cpu")
    # no pgf::recompute: the compiled kernels keep residuals, the reverse pass does not rerun the scans
    assert set(record["phases_cpu_seconds"]) == {"pgf::forward_pass", "pgf::backward"}
    assert all(seconds > 0 for seconds in record["phases_cpu_seconds"].values())
    assert len(record["ops"]) == 5 and all(op["calls"] > 0 for op in record["ops"])
    assert 0 < sum(op["share"] for op in record["ops"]) <= 1.0001 and record["wall_seconds"] > 0
