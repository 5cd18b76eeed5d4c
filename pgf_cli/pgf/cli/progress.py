"""Rich progress bars and summary lines for workflows (a `Reporter`)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from pgf import stopping
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
            TextColumn("{task.fields[rate]}"),
            console=self.console,
            transient=True,
            # nothing is drawn on a non-terminal (a log file, a pipe), where bars are noise
            disable=quiet or not self.console.is_interactive,
        )
        self._task = None
        self._overall = None  # the whole job, in bp (when the workflow says how much there is)
        self._began = 0.0
        self._done_bp = 0
        self._total_bp = 0
        self._bp_this_run = 0
        self._regions = self._regions_done = 0

    def __enter__(self) -> "RichReporter":
        if not self.progress.disable:
            self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # a disabled display is never started: rich before 15 prints a blank line when one stops
        # on a non-terminal, which would sit before the one-line error message
        if not self.progress.disable:
            self.progress.stop()

    def warn(self, message: str) -> None:
        self.console.print(f"WARNING: {message}", style="bold yellow", markup=False)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def region_started(self, regions: list[Region], index: int, count: int) -> EngineProgress:
        stopping.check()  # every step of every command is a point where a signal's stop is honoured
        if self._task is not None:
            self.progress.remove_task(self._task)
        if len(regions) == 1:
            description = f"[{index + 1}/{count}] {regions[0].to_string(commas=True)}"
        else:
            description = f"[{index + 1}-{index + len(regions)}/{count}] {len(regions)} regions of {len(regions[0]):,} bp"
        task = self.progress.add_task(description, total=None, rate="")
        self._task = task

        def update(done: int, total: int) -> None:
            stopping.check()
            self.progress.update(task, completed=done, total=total)

        return update

    def job_started(self, total_bp: int, done_bp: int, regions: int, skipped: int) -> None:
        """The whole job: `total_bp` over `regions`, of which `done_bp` (`skipped` regions) were done before."""
        self._began = time.perf_counter()
        self._total_bp, self._done_bp, self._bp_this_run = total_bp, done_bp, 0
        self._regions, self._regions_done = regions, skipped
        if total_bp > 0:
            self._overall = self.progress.add_task(f"all {regions:,} regions", total=total_bp, completed=done_bp, rate="")

    @property
    def job_size(self) -> tuple[int, int] | None:
        """(regions, bp) of the whole job, once the workflow said (None before)."""
        return (self._regions, self._total_bp) if self._began else None

    def overall_rate(self) -> str:
        """'1.2 Mbp of 3.4 Mbp, 51,000 bp/s, ETA 0:00:43' for the job so far ('' before any region ends)."""
        elapsed = time.perf_counter() - self._began
        if not self._bp_this_run or elapsed <= 0:
            return ""
        rate = self._bp_this_run / elapsed
        left = max(self._total_bp - self._done_bp, 0)
        eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate > 0 else "?"
        return f"{self._done_bp:,} of {self._total_bp:,} bp, {rate:,.0f} bp/s, ETA {eta}"

    def region_finished(self, summary: RegionSummary) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None
        self._done_bp += len(summary.region)
        self._bp_this_run += len(summary.region)
        self._regions_done += 1
        line = summary_line(summary)
        if self._overall is not None:
            self.progress.update(self._overall, completed=self._done_bp, rate=self.overall_rate())
            if self._regions > 1:  # the whole job, also where no bar is drawn (a scheduler's log file)
                line += f"  [{self._regions_done}/{self._regions} regions, {self.overall_rate()}]"
        self.info(line)
