"""Models by Hub id (`--model ORG/NAME[@REVISION]`) against a loopback stand-in for the Hub
(tests/fake_hub.py, HF_ENDPOINT): download, the standard cache, pinned revisions, offline use and
one-line errors. Nothing here reaches the real Hub. Each command runs as a user runs it, in its own
process (huggingface_hub reads its settings when imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from fake_hub import FakeHub
from helpers import random_sequence, write_fasta
from test_caduceus import published_state, write_checkpoint

pytestmark = pytest.mark.slow


def checkpoint_files(folder: Path, seed: int = 0) -> dict[str, bytes]:
    """A tiny random Caduceus-ps checkpoint (config.json, model.safetensors) as the Hub would serve it."""
    write_checkpoint(folder, rcps=True, state=published_state(True, seed=seed))
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def hub(tmp_path):
    with FakeHub() as server:
        files = checkpoint_files(tmp_path / "ckpt")
        server.main = server.add("kuleshov-group/caduceus-tiny", {**files, "pytorch_model.bin": b"pickle: never fetched"})
        server.v2 = server.add("kuleshov-group/caduceus-tiny", checkpoint_files(tmp_path / "ckpt2", seed=1), revision="v2")
        server.add("someone/gated-model", files, gated=True)
        server.add("someone/bert", {"config.json": b'{"model_type": "bert"}', "model.safetensors": files["model.safetensors"]})
        yield server


@pytest.fixture
def genome(tmp_path):
    return write_fasta(tmp_path / "g.fa", {"chr1": random_sequence(300, 2)})


def pgf(tmp_path, hub, *args, offline=False, cwd=None):
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    environment.pop("HF_TOKEN", None)
    if offline:
        environment["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "pgf", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=environment, cwd=cwd or tmp_path)


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_pull_then_attribute_offline_records_the_commit(tmp_path, hub, genome):
    pulled = pgf(tmp_path, hub, "models", "pull", "kuleshov-group/caduceus-tiny")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip().startswith(f"kuleshov-group/caduceus-tiny at commit {hub.main}: {tmp_path / 'hf'}")
    fetched = {path.rsplit("/", 1)[-1] for method, path in hub.requests if "/resolve/" in path}
    assert fetched == {"config.json", "model.safetensors"}  # safetensors preferred; the pickle is never fetched
    out = tmp_path / "x.h5"
    ran = pgf(tmp_path, hub, "attribute", genome, "--region", "chr1:1-200", "--model", "kuleshov-group/caduceus-tiny",
              "-o", out, offline=True)
    assert ran.returncode == 0, ran.stderr
    with h5py.File(out) as h5:
        assert h5.attrs["model_id"] == "kuleshov-group/caduceus-tiny" and h5.attrs["model_revision"] == hub.main
    shown = pgf(tmp_path, hub, "models", "show", "kuleshov-group/caduceus-tiny", offline=True)
    assert shown.returncode == 0 and f"revision        {hub.main}" in shown.stdout


def test_a_pinned_revision_is_downloaded_and_resume_refuses_another(tmp_path, hub, genome):
    out = tmp_path / "x.h5"
    base = ["attribute", genome, "--region", "chr1:1-100", "--region", "chr1:101-220", "--batch-size", 1, "-o", out]
    first = pgf(tmp_path, hub, *base, "--model", "kuleshov-group/caduceus-tiny@v2")
    assert first.returncode == 0, first.stderr
    with h5py.File(out) as h5:
        assert h5.attrs["model_revision"] == hub.v2
    missing = pgf(tmp_path, hub, "models", "pull", "kuleshov-group/caduceus-tiny@v9")
    assert missing.returncode == 2
    assert last_line(missing) == "error: model kuleshov-group/caduceus-tiny@v9: revision 'v9' does not exist in kuleshov-group/caduceus-tiny"


@pytest.mark.parametrize("model, message", [
    ("nobody/nothing", "error: model nobody/nothing not found on the Hub (or private: set HF_TOKEN to a token that can read it)"),
    ("someone/gated-model", "error: model someone/gated-model is gated: accept its terms on the Hub, then set HF_TOKEN"),
    ("someone/bert", "model_type 'bert' is not supported by this version of pgf (supported: "),
])
def test_one_line_errors(tmp_path, hub, genome, model, message):
    out = tmp_path / "x.h5"
    result = pgf(tmp_path, hub, "attribute", genome, "--region", "chr1:1-100", "--model", model, "-o", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert message in last_line(result)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("x.h5")) == []


def test_offline_and_not_cached_says_to_pull(tmp_path, hub, genome):
    result = pgf(tmp_path, hub, "attribute", genome, "--region", "chr1:1-100", "--model", "kuleshov-group/caduceus-tiny",
                 "-o", tmp_path / "x.h5", offline=True)
    assert result.returncode == 2
    assert last_line(result).startswith("error: model kuleshov-group/caduceus-tiny is not in the local cache and the Hub "
                                        "cannot be reached (HF_HUB_OFFLINE is set); run `pgf models pull "
                                        "kuleshov-group/caduceus-tiny` on a machine with a network")


def test_an_interrupted_download_is_never_loaded_and_a_rerun_resumes(tmp_path, hub):
    hub.cut_after = 100  # the connection drops after 100 bytes of each file
    broken = pgf(tmp_path, hub, "models", "pull", "kuleshov-group/caduceus-tiny")
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "the download failed" in last_line(broken) and last_line(broken).endswith("rerun to resume it")
    snapshots = list((tmp_path / "hf").rglob("snapshots/*/model.safetensors"))
    assert not snapshots  # no partial file was put in the snapshot
    hub.cut_after = None
    again = pgf(tmp_path, hub, "models", "pull", "kuleshov-group/caduceus-tiny")
    assert again.returncode == 0, again.stderr


def test_a_local_directory_of_the_same_name_wins(tmp_path, hub):
    write_checkpoint(tmp_path / "kuleshov-group" / "caduceus-tiny", rcps=False)
    result = pgf(tmp_path, hub, "models", "show", "kuleshov-group/caduceus-tiny")
    assert result.returncode == 0, result.stderr
    assert not [path for _, path in hub.requests if "caduceus-tiny" in path]  # the Hub was not asked


def test_the_readme_hub_example_runs_as_written(tmp_path):
    """The README's Hub-id command, verbatim, against the loopback Hub serving a tiny random checkpoint in the
    published layout under that id (the real one is never fetched in tests)."""
    import json
    import shlex

    from test_models_list import published_config

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    line = next(line.strip() for line in readme.splitlines() if line.strip().startswith("pgf attribute")
                and "--model kuleshov-group/" in line)
    args = shlex.split(line)[1:]
    repo_id = args[args.index("--model") + 1]
    files = checkpoint_files(tmp_path / "ckpt")
    config = json.loads(files["config.json"])
    published = published_config(config["d_model"], config["n_layer"], rcps=True)
    published["ssm_cfg"].update(config["ssm_cfg"])
    with FakeHub() as server:
        commit = server.add(repo_id, {**files, "config.json": json.dumps(published).encode()})
        (tmp_path / "sample_data").symlink_to(Path(__file__).parents[1] / "sample_data")
        result = pgf(tmp_path, server, *args)
    assert result.returncode == 0, result.stderr
    out = tmp_path / args[args.index("-o") + 1]
    with h5py.File(out) as h5:
        assert h5.attrs["model_id"] == repo_id and h5.attrs["model_revision"] == commit
        (group,) = h5.values()
        gradient = group["gradient"][()]
    assert gradient.shape == (139_116 - 99_578 + 1, 4) and abs(gradient).sum() > 0
