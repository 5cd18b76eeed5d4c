"""The steps of `pgf attribute` (pgf.workflows.attribute), each called on its own: configure,
resolve_inputs, plan_batches, resolve_model, open_partial, compute_here, write_output and the
partial output's guard; a device worker run in this process; and the workflows' import graph."""

from __future__ import annotations

import ast
import dataclasses
import multiprocessing
import signal
from pathlib import Path

import h5py
import pytest
import torch

from helpers import random_sequence, write_fasta
from pgf.errors import PgfUserError
from pgf.io.genome import Genome
from pgf.io.regions import Region
from pgf.io.tracks import region_group_name
from pgf.workflows import attribute, devices
from pgf.workflows.attribute import (
    AttributeRequest,
    BatchPlan,
    RunStopped,
    compute_here,
    configure,
    open_partial,
    plan_batches,
    resolve_inputs,
    resolve_model,
    write_output,
)
from pgf.workflows.attribute_output import keeping_partial, provenance
from pgf.workflows.common import SilentReporter

SIZES = {"chr1": 1200, "chr2": 700}
WORKFLOWS = Path(attribute.__file__).parent


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    path = write_fasta(tmp_path_factory.mktemp("genome") / "g.fa", {c: random_sequence(n, i + 11) for i, (c, n) in enumerate(SIZES.items())})
    Genome(path).close()  # the .fai
    return path


class Recorder(SilentReporter):
    def __init__(self):
        self.said = []

    def warn(self, message):
        self.said.append(("warn", message))

    def info(self, message):
        self.said.append(("info", message))


def write_bed(path: Path, count: int, length: int, chrom: str = "chr1") -> Path:
    path.write_text("".join(f"{chrom}\t{100 * i}\t{100 * i + length}\tr{i}\n" for i in range(count)))
    return path


def request_for(fasta: Path, output: Path, **fields) -> AttributeRequest:
    return AttributeRequest(fasta=fasta, output=output, model="random-test", device="cpu", **fields)


# --------------------------------------------------------------------------- configure


def test_configure_checks_the_request_and_picks_the_settings(fasta, tmp_path):
    settings = configure(request_for(fasta, tmp_path / "a.bedgraph", dtype="float64"))
    assert settings.fmt == "bedgraph" and settings.dtype is torch.float64
    assert settings.devices is None and settings.device == torch.device("cpu") and settings.device_names == "cpu"
    assert settings.engine.name == "pgf"

    workers = configure(request_for(fasta, tmp_path / "a.h5", devices="cpu,cpu"))
    assert workers.fmt == "h5" and workers.devices == [torch.device("cpu")] * 2
    assert workers.device == torch.device("cpu") and workers.device_names == "cpu,cpu"

    with pytest.raises(PgfUserError, match="^--stride needs --window$"):
        configure(request_for(fasta, tmp_path / "a.h5", stride=10))
    with pytest.raises(PgfUserError, match="is the FASTA"):
        configure(request_for(fasta, fasta, fmt="h5", force=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


# --------------------------------------------------------------------------- resolve_inputs


def test_resolve_inputs_gives_region_options_then_bed_regions(fasta, tmp_path):
    bed = write_bed(tmp_path / "r.bed", 2, 50, chrom="chr2")
    request = request_for(fasta, tmp_path / "a.h5", regions=["chr1:1-120", "chr2"], bed=bed)
    with Genome(fasta) as genome:
        inputs = resolve_inputs(request, genome, "h5")
    assert inputs.regions == [Region("chr1", 0, 120), Region("chr2", 0, 700), Region("chr2", 0, 50, "r0"), Region("chr2", 100, 150, "r1")]
    assert inputs.options.method == request.method and inputs.options.ism_window is None


def test_resolve_inputs_resolves_the_ism_window(fasta, tmp_path):
    from pgf.workflows.interpret import MethodOptions

    request = request_for(fasta, tmp_path / "a.h5", regions=["chr1:1-120"], method="ism",
                          method_options=MethodOptions("ism", ism_region="chr1:11-20"))
    with Genome(fasta) as genome:
        inputs = resolve_inputs(request, genome, "h5")
    assert inputs.options.method == "ism" and inputs.options.ism_window == (10, 20)


def test_resolve_inputs_needs_a_region(fasta, tmp_path):
    with Genome(fasta) as genome, pytest.raises(PgfUserError, match="^no region given"):
        resolve_inputs(request_for(fasta, tmp_path / "a.h5"), genome, "h5")


# --------------------------------------------------------------------------- plan_batches


def test_plan_of_equal_length_bed_regions(fasta, tmp_path):
    bed = write_bed(tmp_path / "r.bed", 5, 60)
    with Genome(fasta) as genome:
        regions = resolve_inputs(request_for(fasta, tmp_path / "a.h5", bed=bed), genome, "h5").regions
    reporter = Recorder()

    by_two = plan_batches(request_for(fasta, tmp_path / "a.h5", bed=bed, batch_size=2), regions, reporter)
    assert [(i, [r.name for r in batch]) for i, batch in by_two.batches] == [(0, ["r0", "r1"]), (1, ["r2", "r3"]), (2, ["r4"])]
    assert by_two.regions == regions

    automatic = plan_batches(request_for(fasta, tmp_path / "a.h5", bed=bed), regions, reporter)  # pgf engine: up to 64 equal lengths
    assert automatic.batches == [(0, regions)]

    windowed = plan_batches(request_for(fasta, tmp_path / "a.h5", bed=bed, window=20), regions, reporter)
    assert windowed.batches == [(i, [region]) for i, region in enumerate(regions)]
    assert reporter.said == []


def test_plan_of_a_shard_keeps_the_whole_list_numbering(fasta, tmp_path):
    regions = [Region("chr1", 100 * i, 100 * i + 60, f"r{i}") for i in range(4)]
    reporter = Recorder()
    plans = [plan_batches(request_for(fasta, tmp_path / "a.h5", batch_size=1, shard=f"{k}/2"), regions, reporter) for k in (1, 2)]
    assert sorted(i for plan in plans for i, _ in plan.batches) == [0, 1, 2, 3]
    for plan in plans:
        assert [len(batch) for _, batch in plan.batches] == [1, 1]
        assert plan.regions == [regions[i] for i, _ in plan.batches]

    empty = plan_batches(request_for(fasta, tmp_path / "a.h5", batch_size=1, shard="3/5"), regions[:2], reporter)
    assert empty == BatchPlan([], [])
    assert reporter.said == [("warn", "shard 3/5 holds no region (2 regions in 5 shards); writing an empty output")]


# --------------------------------------------------------------------------- resolve_model, open_partial, compute_here, write_output


def prepared(fasta: Path, output: Path, reporter, **fields):
    request = request_for(fasta, output, batch_size=1, **fields)
    settings = configure(request)
    genome = Genome(fasta)
    inputs = resolve_inputs(request, genome, settings.fmt)
    plan = plan_batches(request, inputs.regions, reporter)
    model = resolve_model(request, settings, genome, plan.regions, reporter)
    return request, settings, genome, inputs, plan, model


def test_model_setup_describes_the_run(fasta, tmp_path):
    reporter = Recorder()
    request, settings, genome, _, _, model = prepared(fasta, tmp_path / "a.h5", reporter, regions=["chr1:1-100"], target="sum")
    genome.close()
    assert model.metadata.model_id == model.loaded.info.model_id == "random-test"
    assert model.metadata.target == model.target.spec and model.metadata.engine == "pgf"
    assert model.metadata.method == request.method and model.metadata.dtype == "float32"
    assert [kind for kind, message in reporter.said if message.startswith("model 'random-test' is a tiny randomly")] == ["warn"]


def test_steps_compute_resume_and_write(fasta, tmp_path):
    output = tmp_path / "out.h5"
    regions = ["chr1:1-100", "chr1:201-290", "chr2:1-80"]
    reporter = Recorder()
    request, settings, genome, inputs, plan, model = prepared(fasta, output, reporter, regions=regions)
    with genome:
        run = open_partial(request, genome, model.metadata, plan, reporter)
        assert not run.resumed and run.skipped == 0 and run.todo == plan.batches and len(run.todo) == 3
        assert run.identity["regions"] == 3 and run.store.folder == output.with_name("out.h5.partial")

        first = dataclasses.replace(run, todo=run.todo[:1])
        summaries = compute_here(request, settings, genome, model, inputs.options, first, 3, reporter, log=_NoLog())
        assert [s.region for s in summaries] == [Region("chr1", 0, 100)]
        assert run.store.completed() == {"chr1:1-100"}

        resumed_request = dataclasses.replace(request, resume=True)
        resumed = open_partial(resumed_request, genome, model.metadata, plan, reporter)
        assert resumed.resumed and resumed.skipped == 1 and [i for i, _ in resumed.todo] == [1, 2]
        assert reporter.said[-1] == ("info", f"resuming {run.store.folder}: 1 of 3 regions already done (skipped), 2 to compute")
        rest = compute_here(resumed_request, settings, genome, model, inputs.options, resumed, 3, reporter, log=_NoLog())
        assert [str(s.region) for s in rest] == ["chr1:201-290", "chr2:1-80"]

        made = provenance(request, genome, run.identity, settings.device_names, settings.started)
        write_output(request, settings.fmt, resumed.store, model.metadata, made, genome.chrom_sizes, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]  # the partial output is gone
    with h5py.File(output, "r") as handle:
        assert sorted(handle) == sorted(regions)
        assert handle["chr1:201-290"]["score"].shape == (90,)
        assert handle.attrs["model_id"] == "random-test" and handle.attrs["device"] == "cpu"
        assert list(handle.attrs["chrom_names"]) == ["chr1", "chr2"]


def test_write_output_refuses_a_partial_output_with_regions_missing(fasta, tmp_path):
    reporter = Recorder()
    request, settings, genome, inputs, plan, model = prepared(fasta, tmp_path / "o.h5", reporter, regions=["chr1:1-50", "chr1:61-120"])
    with genome:
        run = open_partial(request, genome, model.metadata, plan, reporter)
        compute_here(request, settings, genome, model, inputs.options, dataclasses.replace(run, todo=run.todo[:1]), 2, reporter, _NoLog())
        with pytest.raises(RuntimeError, match=r"holds 1 regions, 2 expected$"):
            write_output(request, settings.fmt, run.store, model.metadata, {}, genome.chrom_sizes, 2)
    assert not (tmp_path / "o.h5").exists() and run.store.folder.is_dir()


class _NoLog:
    def write(self, summary, device=None):
        pass


def test_keeping_partial(fasta, tmp_path):
    reporter = Recorder()
    request, settings, genome, inputs, plan, model = prepared(fasta, tmp_path / "o.h5", reporter, regions=["chr1:1-50", "chr1:61-120"])
    with genome:
        run = open_partial(request, genome, model.metadata, plan, reporter)
        with pytest.raises(KeyboardInterrupt) as stopped, keeping_partial(run.store, run.resumed, 2, reporter):
            raise KeyboardInterrupt
        assert type(stopped.value) is KeyboardInterrupt and not run.store.folder.exists()  # nothing saved: no folder

        run = open_partial(request, genome, model.metadata, plan, reporter)
        with pytest.raises(RunStopped) as stopped, keeping_partial(run.store, run.resumed, 2, reporter):
            compute_here(request, settings, genome, model, inputs.options, dataclasses.replace(run, todo=run.todo[:1]), 2, reporter, _NoLog())
            raise KeyboardInterrupt
        assert (stopped.value.saved, stopped.value.total, stopped.value.partial, stopped.value.signum) == (1, 2, run.store.folder, signal.SIGINT)

        run = open_partial(dataclasses.replace(request, resume=True), genome, model.metadata, plan, reporter)
        with pytest.raises(ValueError), keeping_partial(run.store, run.resumed, 2, reporter):
            raise ValueError("boom")
        assert run.store.folder.is_dir()
        assert reporter.said[-1] == ("warn", f"1 of 2 regions are kept in {run.store.folder}; "
                                             "fix the cause and rerun the same command with --resume to finish")


# --------------------------------------------------------------------------- a device worker, in this process


def worker_setup(fasta: Path, output: Path, reporter, **fields):
    request, settings, genome, inputs, plan, model = prepared(fasta, output, reporter, **fields)
    run = open_partial(request, genome, model.metadata, plan, reporter)
    genome.close()
    setup = devices.WorkerSetup(request, run.store.folder, run.store.identity, run.store.attributes, run.store.token,
                                threads=torch.get_num_threads())
    return setup, plan, run


def test_a_worker_computes_its_batches_with_the_requested_kernels(fasta, tmp_path, monkeypatch):
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the worker would ignore SIGINT in this process
    setup, plan, run = worker_setup(fasta, tmp_path / "w.h5", Recorder(), regions=["chr1:1-100", "chr2:1-80"], kernels="reference")
    engines = []
    original = devices.get_engine

    def recording(*args, **kwargs):
        engines.append(original(*args, **kwargs))
        return engines[-1]

    monkeypatch.setattr(devices, "get_engine", recording)
    parent, child = multiprocessing.Pipe()
    for item in plan.batches:
        parent.send(item)
    parent.send(None)
    devices._worker(setup, 0, "cpu", child)
    assert [engine.backend for engine in engines] == ["reference"]  # the engine is given the kernels
    answers = [parent.recv() for _ in plan.batches]
    assert [(kind, index) for kind, index, _ in answers] == [("done", 0), ("done", 1)]
    assert [str(s.region) for _, _, summaries in answers for s in summaries] == ["chr1:1-100", "chr2:1-80"]
    assert not parent.poll()
    assert run.store.completed() == {region_group_name(r) for r in plan.regions}


def test_a_worker_that_cannot_start_says_so(fasta, tmp_path, monkeypatch):
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    setup, _, _ = worker_setup(fasta, tmp_path / "w.h5", Recorder(), regions=["chr1:1-100"])
    parent, child = multiprocessing.Pipe()
    devices._worker(dataclasses.replace(setup, request=dataclasses.replace(setup.request, fasta=tmp_path / "missing.fa")), 0, "cpu", child)
    kind, why = parent.recv()
    assert kind == "dead" and "missing.fa" in why
    parent2, child2 = multiprocessing.Pipe()
    devices._worker(setup, 0, "nodevice", child2)
    assert parent2.recv()[0] == "dead"


# --------------------------------------------------------------------------- the modules


def workflow_imports(path: Path) -> tuple[set[str], list[str]]:
    """(pgf.workflows modules imported anywhere in `path`, imports made inside functions)."""
    found, nested = set(), []
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        if id(node) not in top:
            nested.append(ast.unparse(node))
        found |= {n.split(".")[2] for n in names if n.startswith("pgf.workflows.") and n.split(".")[2] != "__init__"}
    return found - {path.stem}, nested


def test_workflow_modules_import_without_cycles_and_stay_small():
    graph = {path.stem: workflow_imports(path)[0] & {p.stem for p in WORKFLOWS.glob("*.py")} for path in WORKFLOWS.glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert [name for name in graph if reaches(name, name, set())] == []
    assert "attribute" not in graph["devices"] and "devices" in graph["attribute"]
    for name in ("attribute", "devices", "attribute_request", "attribute_output"):
        assert workflow_imports(WORKFLOWS / f"{name}.py")[1] == [], name
        assert "__enter__" not in (WORKFLOWS / f"{name}.py").read_text() and "__exit__" not in (WORKFLOWS / f"{name}.py").read_text()
    assert {p.name: n for p in WORKFLOWS.glob("*.py") if (n := len(p.read_text().splitlines())) > 400} == {}
