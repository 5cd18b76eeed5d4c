"""One writer per output (pgf.io.lock): a second run on the same output is refused at once, naming the
run that holds it; a lock left by a killed run is taken over."""

from __future__ import annotations

import platform
import signal
import subprocess
import sys

import h5py
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.io.lock import lock_path

from test_batch_processes import REGION_ARGS, REGIONS, batches, genome, pgf_command, start_and_wait_for_first_batch  # noqa: F401

HOLD = "import sys, time\nfrom pgf.io.lock import exclusive_output\nwith exclusive_output(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(120)\n"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_held_output_is_refused_and_a_killed_holders_lock_is_taken_over(genome, tmp_path):  # noqa: F811
    output = tmp_path / "out.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke("attribute", genome, "--model", "random-test", "--region", "chr1:1-100", "-o", output)
        assert result.exit_code == 2 and "Traceback" not in result.output
        message = result.stderr.strip().splitlines()[-1]
        assert message.startswith(f"error: {output} is being written by another pgf run: process {holder.pid} on host {platform.node()}")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5.lock"]  # nothing of the refused run
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert lock_path(output).exists()  # left behind by the killed holder, but no longer locked
    result = invoke("attribute", genome, "--model", "random-test", "--region", "chr1:1-100", "-o", output)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


# the first run, held after its first batch until the test releases it (so the second surely starts meanwhile)
HELD_RUN = """
import sys, time
from pathlib import Path
from pgf.workflows import batch
release, real = Path(sys.argv[1]), batch.BatchComputer.run
def run(self, *args, **kwargs):
    out = real(self, *args, **kwargs)
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return out
batch.BatchComputer.run = run
sys.argv = ["pgf", *sys.argv[2:]]
from pgf.cli.app import main
main()
"""


@pytest.mark.slow
def test_a_second_resume_while_the_first_run_writes_is_refused(genome, tmp_path):  # noqa: F811
    """The restarted-job case: the first attempt still runs when the second starts with --resume."""
    output, release = tmp_path / "busy.h5", tmp_path / "release"
    first_args = pgf_command(genome, output)[3:]  # after `python -m pgf`
    first = start_and_wait_for_first_batch([sys.executable, "-c", HELD_RUN, str(release), *first_args], output)
    try:
        second = subprocess.run(pgf_command(genome, output, "--resume"), capture_output=True, text=True, timeout=300)
    finally:
        release.touch()
    assert second.returncode == 2, second.stderr
    assert f"is being written by another pgf run: process {first.pid}" in second.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    with h5py.File(output) as h5:
        assert len(h5) == len(REGIONS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy.h5", "release"]
    assert not batches(output)
