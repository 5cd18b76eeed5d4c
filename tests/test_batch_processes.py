"""Genome-scale batch jobs (issue #22) with real processes: SIGKILL / SIGTERM / SIGINT and --resume,
several workers (--devices cpu,cpu), and memory of whole-chromosome windowed tracks.

All slow (subprocesses, each importing torch); `--model random-test` and short regions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import random_sequence, write_fasta
from pgf.cli.app import app
from pgf.io.genome import Genome
from test_batch_resume import assert_same_groups

pytestmark = pytest.mark.slow

SIZES = {"chr1": 4000, "chr2": 3000}
# distinct lengths (each region is its own batch in every run), a few hundred bp each
REGIONS = [f"chr1:{1 + 350 * i}-{300 + 350 * i + 7 * i}" for i in range(10)] + [f"chr2:{1 + 400 * i}-{260 + 400 * i + 11 * i}" for i in range(6)]
REGION_ARGS = [arg for region in REGIONS for arg in ("--region", region)]


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> Path:
    return write_fasta(tmp_path_factory.mktemp("genome") / "g.fa", {c: random_sequence(n, i + 3) for i, (c, n) in enumerate(SIZES.items())})


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def pgf_command(genome: Path, output: Path, *args: object) -> list[str]:
    return [sys.executable, "-m", "pgf", "attribute", str(genome), "--model", "random-test", "--device", "cpu",
            "--batch-size", "1", "-o", str(output), *REGION_ARGS, *map(str, args)]


@pytest.fixture(scope="module")
def single(genome, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "all.h5"
    result = invoke("attribute", genome, "--model", "random-test", "--device", "cpu", "--batch-size", 1, "-o", out, *REGION_ARGS)
    assert result.exit_code == 0, result.output
    return out


def batches(output: Path) -> list[Path]:
    return sorted(output.with_name(output.name + ".partial").glob("batch-*.h5"))


def start_and_wait_for_first_batch(command: list[str], output: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not batches(output):
        assert process.poll() is None, f"the run ended before its first batch was seen: {process.communicate()}"
        assert time.monotonic() < deadline, "no batch file after 120 s"
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be interrupted; give it more regions"
    return process


def resume_and_compare(genome: Path, output: Path, single: Path) -> None:
    done = len(batches(output))
    assert 1 <= done <= len(REGIONS)  # all: stopped between the last batch and writing OUT
    result = invoke("attribute", genome, "--model", "random-test", "--device", "cpu", "--batch-size", 1, "-o", output,
                    *REGION_ARGS, "--resume")
    assert result.exit_code == 0, result.output
    assert f"{done} of {len(REGIONS)} regions already done (skipped), {len(REGIONS) - done} to compute" in result.stderr
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]
    assert_same_groups(output, single)


def test_a_stop_after_the_last_batch_resumes_to_the_whole_output(genome, single, tmp_path, monkeypatch):
    """Stopped once every batch is written but before OUT is (a signal landing then): --resume
    computes nothing and writes OUT from the batches."""
    from pgf.workflows import attribute

    output = tmp_path / "stopped.h5"

    def stopped(*_, **__):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(attribute, "write_output", stopped)
        result = invoke("attribute", genome, "--model", "random-test", "--device", "cpu", "--batch-size", 1, "-o", output,
                        *REGION_ARGS)
    assert result.exit_code == 130, result.output
    assert not output.exists() and len(batches(output)) == len(REGIONS)
    resume_and_compare(genome, output, single)


def test_sigkill_then_resume_equals_an_uninterrupted_run(genome, single, tmp_path):
    output = tmp_path / "killed.h5"
    process = start_and_wait_for_first_batch(pgf_command(genome, output), output)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not output.exists()
    resume_and_compare(genome, output, single)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_cleanly_with_a_resume_hint(genome, single, tmp_path, signum, code):
    output = tmp_path / "stopped.h5"
    process = start_and_wait_for_first_batch(pgf_command(genome, output, "--quiet"), output)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    saved = len(batches(output))
    assert last.startswith(f"{what}; {saved} of {len(REGIONS)} regions are saved in {output}.partial; to finish, run: pgf attribute ")
    assert last.endswith(" --resume")
    assert not [p for p in output.with_name(output.name + ".partial").iterdir() if p.name.endswith(".tmp")]
    resume_and_compare(genome, output, single)


# --------------------------------------------------------------------------- several workers


def test_two_cpu_workers_equal_one_run(genome, single, tmp_path):
    output = tmp_path / "devices.h5"
    result = invoke("attribute", genome, "--model", "random-test", "--batch-size", 1, "-o", output, *REGION_ARGS,
                    "--devices", "cpu,cpu")
    assert result.exit_code == 0, result.output
    assert f"{len(REGIONS)} batches on 2 workers: cpu, cpu" in result.stderr
    assert result.stderr.count(" bp  ") == len(REGIONS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["devices.h5"]
    assert_same_groups(output, single)


def test_a_failing_region_does_not_lose_the_other_workers_results(tmp_path):
    good = {"chr1": random_sequence(2000, 11)}
    bad = {"chr1": good["chr1"][:1210] + "12" + good["chr1"][1212:]}  # digits inside the third region
    fasta = write_fasta(tmp_path / "g.fa", bad)
    regions = ["chr1:1-300", "chr1:401-720", "chr1:1101-1440", "chr1:1501-1860"]
    args = [arg for region in regions for arg in ("--region", region)]
    output = tmp_path / "out" / "w.h5"
    output.parent.mkdir()
    first = invoke("attribute", fasta, "--model", "random-test", "-o", output, *args, "--devices", "cpu,cpu")
    assert first.exit_code == 2, first.output
    assert "invalid sequence character '1' at chr1:1,211" in first.stderr.strip().splitlines()[-1]
    assert "3 of 4 regions are kept in" in first.stderr
    assert len(batches(output)) == 3 and not output.exists()
    write_fasta(fasta, good)  # fixed in place: same lengths, same index
    os.utime(Path(f"{fasta}.fai"))  # (pyfaidx warns about an index older than its FASTA)
    resumed = invoke("attribute", fasta, "--model", "random-test", "-o", output, *args, "--devices", "cpu,cpu", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "3 of 4 regions already done (skipped), 1 to compute" in resumed.stderr
    reference = tmp_path / "reference.h5"
    assert invoke("attribute", fasta, "--model", "random-test", "--device", "cpu", "-o", reference, *args).exit_code == 0
    assert_same_groups(output, reference)


def test_bad_devices_are_one_line_errors(genome, tmp_path):
    for text, fragment in (("tpu", "unknown device 'tpu'"), (",", "comma-separated list")):
        result = invoke("attribute", genome, "--model", "random-test", "-o", tmp_path / "x.h5", "--region", "chr1:1-50", "--devices", text)
        assert result.exit_code == 2, result.output
        assert fragment in result.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bounded memory for whole chromosomes

MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from types import SimpleNamespace
    import pgf.workflows.attribute as attribute

    class FastEngine:
        # stands in for the model's gradient (the engine's own memory is per window, tested elsewhere);
        # a different value at every base so that the bigWig holds one interval per base
        name = "pgf"
        def gradient(self, model, inputs, readout, progress):
            position = torch.arange(inputs.shape[1], dtype=inputs.dtype)[None, :, None]
            return SimpleNamespace(gradient=inputs * (1 + position / 7919.0), target_value=inputs.sum(dim=(1, 2)))

    attribute.get_engine = lambda name, tile, offload=None, backend=None: FastEngine()
    request = attribute.AttributeRequest(fasta=sys.argv[1], output=sys.argv[2], regions=["chr1"], model="random-test",
                                         device="cpu", window=10000, stride=10000)
    attribute.run_attribute(request)
    # VmHWM: this process's peak RSS (ru_maxrss would include the parent's RSS at fork time)
    print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
    """
)


def random_fasta(path: Path, length: int) -> Path:
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)[np.random.default_rng(length).integers(0, 4, length)]
    lines = bases[: length - length % 60].reshape(-1, 60)
    with open(path, "wb") as handle:
        handle.write(b">chr1\n")
        for line in lines:
            handle.write(line.tobytes() + b"\n")
        if length % 60:
            handle.write(bases[length - length % 60 :].tobytes() + b"\n")
    return path


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_whole_chromosome_windows_stream_in_bounded_memory(tmp_path):
    """Peak RSS of a windowed whole-chromosome run does not grow with the chromosome (HDF5 output;
    600 kb vs 6 Mb within 10%), and the 6-Mb track converts to a whole-chromosome bigWig."""
    peaks, outputs = {}, {}
    for length in (600_000, 6_000_000):
        fasta = random_fasta(tmp_path / f"c{length}.fa", length)
        Genome(fasta).close()  # builds the .fai (pyfaidx reads the whole file once for that; not part of the run)
        outputs[length] = tmp_path / f"c{length}.h5"
        run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(fasta), str(outputs[length])],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
        peaks[length] = int(run.stdout.split()[-1]) * 1024
    ratio = peaks[6_000_000] / peaks[600_000]
    print(f"peak RSS 600 kb {peaks[600_000] / 2**20:.1f} MiB, 6 Mb {peaks[6_000_000] / 2**20:.1f} MiB, ratio {ratio:.3f}")
    assert ratio < 1.10

    import h5py
    import pyBigWig

    with h5py.File(outputs[6_000_000], "r") as handle:
        group = handle["chr1:1-6000000"]
        assert group["score"].shape == (6_000_000,) and group["window_bounds"].shape == (600, 4)
        tail = group["score"][-20000:]
    bigwig = tmp_path / "c6000000.bw"
    assert invoke("merge", outputs[6_000_000], "-o", bigwig).exit_code == 0
    bw = pyBigWig.open(str(bigwig))
    try:
        assert bw.chroms() == {"chr1": 6_000_000}
        np.testing.assert_array_equal(np.array(bw.values("chr1", 6_000_000 - 20000, 6_000_000), dtype=np.float32), tail)
    finally:
        bw.close()


def test_a_killed_worker_loses_only_its_batch(genome, single, tmp_path):
    """SIGKILL one of two workers mid-run: the other finishes the remaining batches, the run names the dead
    worker and exits 1, and --resume computes what the dead worker held."""
    import multiprocessing
    import threading

    output = tmp_path / "k.h5"
    killed = {}

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while not batches(output) and time.monotonic() < deadline:
            time.sleep(0.01)
        children = multiprocessing.active_children()
        if children:
            killed["pid"] = children[0].pid
            os.kill(children[0].pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    result = invoke("attribute", genome, "--model", "random-test", "--batch-size", 1, "-o", output, *REGION_ARGS,
                    "--devices", "cpu,cpu")
    killer.join()
    assert killed, "no worker to kill"
    print("exit code after killing a worker:", result.exit_code)
    if result.exit_code == 0:  # the worker was killed between two batches: nothing was lost
        assert_same_groups(output, single)
        return
    assert result.exit_code == 1, result.output
    # "... died (exit code -9) in batch K", or, killed between taking a batch and announcing it,
    # "1 batches were not computed (worker on cpu died (exit code -9))"
    assert "worker on cpu died (exit code -9)" in result.stderr.strip().splitlines()[-1]
    assert f"{len(REGIONS) - 1} of {len(REGIONS)} regions are kept in" in result.stderr
    resume_and_compare(genome, output, single)


class _Collect:
    """A reporter and log that keep what they are told."""

    def __init__(self):
        self.warnings, self.finished = [], []

    def info(self, message):
        pass

    def warn(self, message):
        self.warnings.append(message)

    def region_finished(self, summary):
        self.finished.append(summary)

    def write(self, summary, device=None):
        pass


def _run_scripted(tmp_path, target, n_batches=5):
    import torch

    import scripted_workers
    from pgf.io.partial import PartialStore
    from pgf.io.regions import Region
    from pgf.workflows.devices import run_on_devices

    folder = tmp_path / "out.partial"
    folder.mkdir()
    store = PartialStore(folder, {}, {})
    todo = [(i, [Region("chr1", 100 * i, 100 * i + 50)]) for i in range(n_batches)]
    collect = _Collect()
    run = lambda: run_on_devices(None, [torch.device("cpu")] * 2, store, todo, n_batches, collect, collect,  # noqa: E731
                                 target=getattr(scripted_workers, target))
    return run, collect


def test_a_worker_killed_after_saving_its_batch_loses_nothing(tmp_path):
    run, collect = _run_scripted(tmp_path, "save_then_die")
    run()  # no error: batch 0 is in the partial output, the other worker computed the rest
    assert len(collect.warnings) == 1 and "after saving batch 0: its regions are kept" in collect.warnings[0]


def test_a_worker_that_cannot_start_gives_its_batch_to_the_others(tmp_path):
    run, collect = _run_scripted(tmp_path, "first_cannot_start")
    with pytest.raises(RuntimeError, match="could not start: RuntimeError: no such device$"):
        run()  # the failure is reported, but every batch was computed by the other worker


def test_a_worker_killed_holding_a_batch_loses_that_batch_only(tmp_path):
    run, collect = _run_scripted(tmp_path, "die_holding")
    with pytest.raises(RuntimeError, match=r"^worker on cpu died \(exit code 9\) in batch [0-4]$"):
        run()
