"""Rich progress bars and summary lines for workflows (a `Reporter`)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from pgf.engine import Progress as EngineProgress
from pgf.io.regions import Region
from pgf.workflows.common import RegionSummary


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def summary_line(summary: RegionSummary) -> str:
    """One line per finished region: coordinates, name, length, masked bases, time, memory, target."""
    region = summary.region
    label = region.to_string(commas=True) + (f" ({region.name})" if region.name else "")
    masked = f", {summary.masked_bases:,} masked" if summary.masked_bases else ""
    batch = f" (batch of {summary.batch})" if summary.batch > 1 else ""
    target = "windowed" if summary.target_value != summary.target_value else f"{summary.target_value:.6g}"
    return (
        f"{label}  {len(region):,} bp{masked}  {summary.seconds:.2f} s{batch}  "
        f"{summary.memory_kind} {format_bytes(summary.peak_memory_bytes)}  target {target}"
    )


class RichReporter:
    """Draws one bar per region on stderr and prints a summary line when it ends."""

    def __init__(self, quiet: bool = False):
        self.console = Console(stderr=True, soft_wrap=True, highlight=False)
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            # Rich draws nothing on a non-terminal (a log file, a pipe) except a blank
            # line when the bar stops, which would sit before the one-line error message.
            disable=quiet or not self.console.is_interactive,
        )
        self._task = None

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def warn(self, message: str) -> None:
        self.console.print(f"WARNING: {message}", style="bold yellow", markup=False)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def region_started(self, regions: list[Region], index: int, count: int) -> EngineProgress:
        if self._task is not None:
            self.progress.remove_task(self._task)
        if len(regions) == 1:
            description = f"[{index + 1}/{count}] {regions[0].to_string(commas=True)}"
        else:
            description = f"[{index + 1}-{index + len(regions)}/{count}] {len(regions)} regions of {len(regions[0]):,} bp"
        task = self.progress.add_task(description, total=None)
        self._task = task

        def update(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=total)

        return update

    def region_finished(self, summary: RegionSummary) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None
        self.info(summary_line(summary))
