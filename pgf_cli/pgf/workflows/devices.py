"""`--devices`: one worker process per device on one workstation.

The parent deals batches out longest first, one at a time over each worker's
own pipe; each worker loads the model on its device, computes the batch it is
handed and writes it into the run's one partial output (`OUT.partial/`, atomic
per batch), then reports back and gets the next. A worker that fails on a batch reports it and goes on with the next; a
worker that dies loses only the batch it held. The others' results stay in the
partial output, the run ends with an error naming the failures, and `--resume`
computes what is missing.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import torch

from pgf import stopping
from pgf.engine import get_engine
from pgf.errors import PgfUserError
from pgf.io.genome import Genome
from pgf.io.partial import PartialStore
from pgf.io.regions import Region
from pgf.models.registry import load_model
from pgf.workflows.attribute_request import AttributeRequest, resolve_target
from pgf.workflows.batch import BatchComputer
from pgf.workflows.common import RegionSummary, Reporter, resolve_dtype
from pgf.workflows.interpret import effective_options, resolve_ism_region
from pgf.workflows.kernels import checked_kernels

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

    request: AttributeRequest
    folder: Path
    identity: dict
    attributes: dict
    token: str
    threads: int


def _worker(setup: WorkerSetup, worker: int, device_name: str, connection: Connection) -> None:
    """A worker process: set up on `device_name`, then compute the batches the parent sends one at a
    time until it sends None. A failure before the first batch is reported as ("dead", why) (the
    parent gives its batch to another worker); one batch failing is reported as ("failed", ...)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what a Ctrl-C stops
    request = setup.request
    started = False
    try:
        device = _use_device(device_name, setup.threads)
        with Genome(request.fasta) as genome:
            computer = _worker_computer(setup, genome, device)
            started = True
            _serve(computer, connection)
    except BaseException as exc:  # noqa: BLE001 - before the first batch: reported to the parent, which decides
        if started:
            raise
        connection.send(("dead", f"{type(exc).__name__}: {exc}"))


def _use_device(device_name: str, threads: int) -> torch.device:
    """Make `device_name` this process's device (a CPU worker gets its share of the threads)."""
    device = torch.device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(threads)
    return device


def _worker_computer(setup: WorkerSetup, genome: Genome, device: torch.device) -> BatchComputer:
    """The run's computation rebuilt on `device`: model, target, engine, and the shared partial output."""
    request = setup.request
    dtype = resolve_dtype(request.dtype)
    loaded = load_model(request.model, device=device, dtype=dtype, vocab=request.vocab)
    target = resolve_target(request, loaded.model, genome, [])
    engine = get_engine(request.engine, request.tile, offload=request.offload,
                        backend=checked_kernels(request.kernels, device))
    store = PartialStore(setup.folder, setup.identity, setup.attributes, setup.token)
    options = resolve_ism_region(effective_options(request.method, request.method_options), genome.chrom_sizes)
    return BatchComputer(genome, engine, loaded.model, target, request.method, device, dtype, store,
                         request.window, request.stride, request.batch_size, options=options)


def _serve(computer: BatchComputer, connection: Connection) -> None:
    """Compute each (index, batch) received and answer ("done", index, summaries) or ("failed", index,
    is a user error, message); return on None or when the parent is gone."""
    while True:
        try:
            item = connection.recv()
        except EOFError:  # the parent is gone
            break
        if item is None:
            break
        index, batch = item
        try:
            summaries = computer.run(index, batch, lambda done, total: None)
        except PgfUserError as exc:
            connection.send(("failed", index, True, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001
            connection.send(("failed", index, False, f"{type(exc).__name__}: {exc}"))
            continue
        connection.send(("done", index, summaries))


class _Workers:
    """One process per device, each with its own pipe: the parent hands a worker its next batch when
    it reports the last one. No lock is shared, so a worker killed at any moment (SIGKILL, the OOM
    killer) cannot leave a queue locked for the others, and the parent always knows what it held."""

    def __init__(self, setup: WorkerSetup, devices: list[torch.device], todo: list[tuple[int, list[Region]]],
                 target=None):
        context = multiprocessing.get_context("spawn")
        self.devices = devices
        self.queue = deque(sorted(todo, key=lambda item: (-sum(len(r) for r in item[1]), item[0])))  # longest first
        self.pipes, self.processes = [], []
        for i, device in enumerate(devices):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=target or _worker, args=(setup, i, str(device), child_end), daemon=True)
            process.start()
            child_end.close()
            self.pipes.append(parent_end)
            self.processes.append(process)
        self.live = set(range(len(devices)))
        self.idle: set[int] = set()  # live workers with nothing to do
        self.holding: dict[int, tuple[int, list[Region]]] = {}  # worker -> the batch it was handed
        for worker in range(len(devices)):
            self.hand_out(worker)

    def hand_out(self, worker: int) -> None:
        """The worker's next batch; with none left it waits (a batch may come back) until `stop`."""
        if not self.processes[worker].is_alive():  # its last messages, read after it ended
            return
        if not self.queue:
            self.idle.add(worker)
            return
        item = self.queue.popleft()
        self.holding[worker] = item
        self._send(worker, item)

    def give_back(self, item: tuple[int, list[Region]]) -> None:
        """A batch a worker was handed but never started (it could not start) goes to the next free one."""
        self.queue.appendleft(item)
        if self.idle:
            self.hand_out(self.idle.pop())

    def _send(self, worker: int, item) -> None:
        try:
            self.pipes[worker].send(item)
        except OSError:  # it died meanwhile; its sentinel reports it
            pass

    def messages(self, timeout: float):
        """(worker, message) as they come; (worker, None) once a worker's process has ended."""
        by_object = {}
        for worker in self.live:
            by_object[self.pipes[worker]] = (worker, False)
            by_object[self.processes[worker].sentinel] = (worker, True)
        for ready in wait(list(by_object), timeout=timeout):
            worker, ended = by_object[ready]
            if worker not in self.live:
                continue
            if not ended:
                try:
                    yield worker, self.pipes[worker].recv()
                except (EOFError, OSError):
                    pass  # it ended mid-message: its sentinel reports it
                continue
            while self._poll(worker):  # what it sent before it ended comes first
                try:
                    yield worker, self.pipes[worker].recv()
                except (EOFError, OSError):
                    break
            self.processes[worker].join(timeout=10)
            self.live.discard(worker)
            self.idle.discard(worker)
            yield worker, None

    def _poll(self, worker: int) -> bool:
        try:
            return self.pipes[worker].poll()
        except (EOFError, OSError):
            return False

    def stop(self) -> None:
        """Idle workers are told to stop; any still busy (an interrupted run) are terminated."""
        for worker in self.idle:
            self._send(worker, None)
        for worker in self.idle:
            self.processes[worker].join(timeout=10)
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=10)
        for pipe in self.pipes:
            pipe.close()


def run_on_devices(request, devices, store: PartialStore, todo: list[tuple[int, list[Region]]], total: int,
                   reporter: Reporter, log, target=None) -> list[RegionSummary]:
    """Compute `todo` (batch index, regions) on one worker per device; summaries of what finished.
    `target(setup, worker, device name, connection)` runs in each process (default `_worker`)."""
    cpu_workers = sum(1 for d in devices if d.type == "cpu")
    setup = WorkerSetup(request, store.folder, store.identity, store.attributes, store.token,
                        threads=max(1, torch.get_num_threads() // max(cpu_workers, 1)))
    reporter.info(f"{len(todo)} batches on {len(devices)} workers: {', '.join(str(d) for d in devices)}")
    workers = _Workers(setup, devices, todo, target)
    failures: list[tuple[bool, str]] = []
    summaries: list[RegionSummary] = []
    try:
        while workers.live and (workers.queue or workers.holding):
            stopping.check()
            for worker, message in workers.messages(POLL_SECONDS):
                device = devices[worker]
                if message is None:  # the process ended
                    held = workers.holding.pop(worker, None)
                    code = workers.processes[worker].exitcode
                    if held is None:
                        continue
                    death = f"worker on {device} died (exit code {code})"
                    if store.has_batch(held[0]):  # killed after committing it, before reporting it
                        reporter.warn(f"{death} after saving batch {held[0]}: its regions are kept "
                                      "(their summary lines are missing)")
                    else:
                        failures.append((False, f"{death} in batch {held[0]}"))
                    continue
                kind = message[0]
                if kind == "dead":  # could not start: its batch goes back for the others
                    failures.append((False, f"worker on {device} could not start: {message[1]}"))
                    held = workers.holding.pop(worker, None)
                    if held is not None:
                        workers.give_back(held)
                    continue
                workers.holding.pop(worker, None)
                if kind == "done":
                    for summary in message[2]:
                        summaries.append(summary)
                        log.write(summary, str(device))
                        reporter.region_finished(summary)
                else:  # "failed"
                    failures.append((message[2], f"{device}: {message[3]}"))
                workers.hand_out(worker)
    finally:
        workers.stop()
    missing = len(workers.queue) + len(workers.holding)
    if missing:
        failures.append((False, f"{missing} batches were not computed (no worker left)"))
    if failures:
        first = failures[0][1]
        more = f" (and {len(failures) - 1} more failures)" if len(failures) > 1 else ""
        if all(user for user, _ in failures):
            raise PgfUserError(first + more)
        raise RuntimeError(first + more)
    return summaries
