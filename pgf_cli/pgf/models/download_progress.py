"""A rich progress bar for Hub downloads, in the form huggingface_hub takes (`tqdm_class`).

huggingface_hub reports a download through tqdm objects (files fetched, bytes transferred);
`RichDownloadBar` is a tqdm that keeps tqdm's counting and draws each bar as a task of one
shared rich `Progress` on stderr instead of printing tqdm's text. huggingface_hub ≥ 1.1 reports
the bytes of every file through it too; older versions, only the files fetched (their per-file
byte bars stay their own). Nothing is drawn where stderr
is not a terminal (a log, a pipe) or when `HF_HUB_DISABLE_PROGRESS_BARS` is set.
"""

from __future__ import annotations

import io
import os
import threading

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text
from tqdm.auto import tqdm


def _disabled_by_user() -> bool:
    return os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in ("1", "true", "yes", "on")


class AmountColumn(ProgressColumn):
    """Bytes for a bar counting bytes ("12.3/40.0 MB"), a count for the others ("3/5")."""

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "B":
            return DownloadColumn().render(task)
        total = "?" if task.total is None else f"{task.total:.0f}"
        return Text(f"{task.completed:.0f}/{total}", style="progress.download")


class RichDownloadBar(tqdm):
    """tqdm's counting, rich's drawing: every bar of a download is a task of `RichDownloadBar.progress`."""

    progress: Progress | None = None  # the display the bars draw on (`start_display`)
    _draw_lock = threading.Lock()  # not `_lock`: tqdm keeps its own write lock under that name

    def __init__(self, *args, **kwargs):
        kwargs.pop("name", None)  # huggingface_hub's own tqdm takes a name; tqdm does not
        kwargs["file"] = io.StringIO()  # tqdm's text goes nowhere: rich draws
        kwargs.pop("bar_format", None)
        self._task: TaskID | None = None
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        progress = type(self).progress
        if progress is None:
            return True
        with self._draw_lock:
            if self._task is None:
                self._task = progress.add_task(self.desc or "Downloading", total=self.total or None, unit=self.unit)
            progress.update(self._task, completed=self.n, total=self.total or None, description=self.desc or "Downloading")
        return True

    def close(self) -> None:
        if not self.disable:
            self.display()
        super().close()


def start_display(console: Console | None = None) -> Progress | None:
    """Start the shared display the download bars draw on (None when nothing should be drawn);
    stop it with `stop_display`."""
    console = console or Console(stderr=True, highlight=False)
    if _disabled_by_user() or not console.is_interactive:
        return None
    progress = Progress(TextColumn("{task.description}"), BarColumn(), AmountColumn(), TimeRemainingColumn(),
                        console=console, transient=True)
    progress.start()
    RichDownloadBar.progress = progress
    return progress


def stop_display(progress: Progress | None) -> None:
    """Stop what `start_display` started."""
    RichDownloadBar.progress = None
    if progress is not None:
        progress.stop()
