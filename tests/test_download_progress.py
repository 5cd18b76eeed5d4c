"""The rich bar of Hub downloads: huggingface_hub's tqdm reports drive one rich task per bar, bytes
included, and nothing is drawn off a terminal or when HF_HUB_DISABLE_PROGRESS_BARS is set. The
download itself comes from the loopback stand-in for the Hub (tests/fake_hub.py)."""

from __future__ import annotations

import io
from pathlib import Path

import huggingface_hub
from huggingface_hub import snapshot_download
from packaging.version import Version
from rich.console import Console

from fake_hub import FakeHub
from pgf.models.download_progress import RichDownloadBar, start_display, stop_display


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, force_interactive=True, width=100)


def test_a_download_fills_the_bars_to_the_files_sizes(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    files = {"config.json": b'{"model_type": "caduceus"}', "model.safetensors": bytes(range(256)) * 400}
    with FakeHub() as hub:
        hub.add("org/model", files)
        progress = start_display(terminal())
        assert progress is not None
        try:
            folder = snapshot_download("org/model", endpoint=hub.url, cache_dir=tmp_path / "cache", tqdm_class=RichDownloadBar)
            tasks = list(progress.tasks)
        finally:
            stop_display(progress)
    assert (tmp_path / "cache").exists() and sorted(p.name for p in Path(folder).iterdir()) == sorted(files)
    assert tasks, "no bar was drawn"
    finished = [task for task in tasks if task.total]
    assert finished and all(task.completed == task.total for task in finished)
    files_bars = [task for task in tasks if task.fields.get("unit") != "B"]
    assert any(task.total == len(files) and task.completed == len(files) for task in files_bars)
    if Version(huggingface_hub.__version__) >= Version("1.1"):  # bytes go through tqdm_class from 1.1 on
        byte_bars = [task for task in tasks if task.fields.get("unit") == "B" and task.total]
        assert byte_bars and max(task.completed for task in byte_bars) == sum(len(body) for body in files.values())
    assert RichDownloadBar.progress is None  # stopped


def test_nothing_is_drawn_off_a_terminal_or_when_disabled(monkeypatch):
    assert start_display(Console(file=io.StringIO(), force_terminal=False)) is None
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    assert start_display(terminal()) is None
    bar = RichDownloadBar(total=10, desc="x")  # no display: counting only, nothing raised
    bar.update(4)
    bar.close()
    assert bar.n == 4
