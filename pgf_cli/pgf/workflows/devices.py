"""`--devices`: one worker process per device on one workstation.

The parent deals batches out longest first through a queue; each worker loads
the model on its device, computes the batches it takes and writes each into
the run's one partial output (`OUT.partial/`, atomic per batch), then reports
back. A worker that fails on a batch reports it and goes on with the next; a
worker that dies loses only the batch it held. The others' results stay in the
partial output, the run ends with an error naming the failures, and `--resume`
computes what is missing.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from dataclasses import dataclass
from pathlib import Path

import torch

from pgf.errors import PgfUserError
from pgf.io.genome import Genome
from pgf.io.partial import PartialStore
from pgf.io.regions import Region
from pgf.workflows.batch import BatchComputer
from pgf.workflows.common import RegionSummary, Reporter, resolve_dtype
from pgf.workflows.interpret import effective_options, resolve_ism_region
from pgf.workflows.kernels import use_kernels

POLL_SECONDS = 0.5


def parse_devices(text: str) -> list[torch.device]:
    """'cuda:0,cuda:1', 'cpu,cpu' or 'all' (every CUDA device) -> devices (one worker each)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise PgfUserError("--devices all: no CUDA device is available (use --devices cpu,cpu to run CPU workers)")
        return [torch.device("cuda", i) for i in range(count)]
    if not names:
        raise PgfUserError("--devices needs a comma-separated list such as cuda:0,cuda:1 (or all)")
    devices = []
    for name in names:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise PgfUserError(f"--devices: unknown device {name!r}; use cpu, cuda or cuda:N") from None
        if device.type not in ("cpu", "cuda"):
            raise PgfUserError(f"--devices: unknown device {name!r}; use cpu, cuda or cuda:N")
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = device.index if device.index is not None else 0
            if index >= count:
                raise PgfUserError(f"--devices: {name} is not available ({count} CUDA device{'s' if count != 1 else ''} here)")
            device = torch.device("cuda", index)
        devices.append(device)
    return devices


@dataclass
class WorkerSetup:
    """What a worker needs to rebuild the run's computation on its own device (picklable)."""

    request: object  # AttributeRequest
    folder: Path
    identity: dict
    attributes: dict
    token: str
    threads: int


def _worker(setup: WorkerSetup, worker: int, device_name: str, tasks, results) -> None:
    from pgf.models.registry import load_model
    from pgf.workflows.attribute import _resolve_target

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what a Ctrl-C stops
    request = setup.request
    try:
        device = torch.device(device_name)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        else:
            torch.set_num_threads(setup.threads)
        genome = Genome(request.fasta)
        kernels = use_kernels(request.kernels, device)
        kernels.__enter__()
        dtype = resolve_dtype(request.dtype)
        loaded = load_model(request.model, device=device, dtype=dtype, vocab=request.vocab)
        target = _resolve_target(request, loaded.model, genome, [])
        from pgf.engine import get_engine

        engine = get_engine(request.engine, request.tile, offload=request.offload)
        store = PartialStore(setup.folder, setup.identity, setup.attributes, setup.token)
        options = resolve_ism_region(effective_options(request.method, request.method_options), genome.chrom_sizes)
        computer = BatchComputer(genome, engine, loaded.model, target, request.method, device, dtype, store,
                                 request.window, request.stride, request.batch_size, options=options)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        results.put(("dead", worker, f"{type(exc).__name__}: {exc}"))
        return
    while True:
        item = tasks.get()
        if item is None:
            break
        index, batch = item
        results.put(("started", worker, index))
        try:
            summaries = computer.run(index, batch, lambda done, total: None)
        except PgfUserError as exc:
            results.put(("failed", worker, index, True, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001
            results.put(("failed", worker, index, False, f"{type(exc).__name__}: {exc}"))
            continue
        results.put(("done", worker, index, summaries))
    genome.close()


def run_on_devices(request, devices, store: PartialStore, todo: list[tuple[int, list[Region]]], total: int,
                   reporter: Reporter, log) -> list[RegionSummary]:
    """Compute `todo` (batch index, regions) on one worker per device; summaries of what finished."""
    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    for item in sorted(todo, key=lambda item: (-sum(len(r) for r in item[1]), item[0])):  # longest first
        tasks.put(item)
    for _ in devices:
        tasks.put(None)
    cpu_workers = sum(1 for d in devices if d.type == "cpu")
    setup = WorkerSetup(request, store.folder, store.identity, store.attributes, store.token,
                        threads=max(1, torch.get_num_threads() // max(cpu_workers, 1)))
    workers = [context.Process(target=_worker, args=(setup, i, str(d), tasks, results), daemon=True)
               for i, d in enumerate(devices)]
    reporter.info(f"{len(todo)} batches on {len(devices)} workers: {', '.join(str(d) for d in devices)}")
    for process in workers:
        process.start()
    pending = {index for index, _ in todo}
    holding: dict[int, int] = {}  # worker -> batch index in hand
    failures: list[tuple[bool, str]] = []
    summaries: list[RegionSummary] = []
    try:
        while pending:
            try:
                message = results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                for worker, process in enumerate(workers):
                    if not process.is_alive() and worker in holding:
                        index = holding.pop(worker)
                        pending.discard(index)
                        failures.append((False, f"worker on {devices[worker]} died (exit code {process.exitcode}) in batch {index}"))
                if not any(process.is_alive() for process in workers) and results.empty():
                    break
                continue
            kind, worker = message[0], message[1]
            if kind == "started":
                holding[worker] = message[2]
            elif kind == "done":
                holding.pop(worker, None)
                pending.discard(message[2])
                for summary in message[3]:
                    summaries.append(summary)
                    log.write(summary, str(devices[worker]))
                    reporter.region_finished(summary)
            elif kind == "failed":
                holding.pop(worker, None)
                pending.discard(message[2])
                failures.append((message[3], f"{devices[worker]}: {message[4]}"))
            elif kind == "dead":
                failures.append((False, f"worker on {devices[worker]} could not start: {message[2]}"))
    finally:
        for process in workers:
            if process.is_alive():
                process.terminate()
        for process in workers:
            process.join(timeout=10)
    if pending:
        failures.append((False, f"{len(pending)} batches were not computed (no worker left)"))
    if failures:
        first = failures[0][1]
        more = f" (and {len(failures) - 1} more failures)" if len(failures) > 1 else ""
        if all(user for user, _ in failures):
            raise PgfUserError(first + more)
        raise RuntimeError(first + more)
    return summaries
