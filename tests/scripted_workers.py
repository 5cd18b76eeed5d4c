"""Worker processes with a script, for tests of `pgf.workflows.devices.run_on_devices` (importable by
spawned children: the test folder is on their sys.path)."""

import os
import time


def save_then_die(setup, worker, device_name, connection):
    """Worker 0 commits batch 0's file and is killed before it reports it; any other worker
    reports every batch it is handed as done (with no summaries)."""
    while True:
        item = connection.recv()
        if item is None:
            return
        index, _ = item
        if worker == 0 and index == 0:
            (setup.folder / f"batch-{index:06d}-{setup.token}-0000000000000000.h5").write_bytes(b"")
            os._exit(9)
        time.sleep(0.05)
        connection.send(("done", index, []))


def first_cannot_start(setup, worker, device_name, connection):
    """Worker 0 cannot start; the others report every batch as done."""
    if worker == 0:
        connection.send(("dead", "RuntimeError: no such device"))
        return
    while True:
        item = connection.recv()
        if item is None:
            return
        connection.send(("done", item[0], []))


def die_holding(setup, worker, device_name, connection):
    """Worker 0 is killed while it holds its first batch; the others report their batches done."""
    while True:
        item = connection.recv()
        if item is None:
            return
        if worker == 0:
            os._exit(9)
        connection.send(("done", item[0], []))
