"""What `pgf attribute` was asked to do, and how it resolves against a FASTA and a model.

Shared by the run in the parent process (pgf.workflows.attribute) and by the device
workers (pgf.workflows.devices), which rebuild the same target on their own device;
it imports neither of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgf.engine import DEFAULT_ENGINE
from pgf.errors import OutputError, PgfUserError, TargetError
from pgf.io.atomic import check_output_path
from pgf.io.genome import Genome
from pgf.io.overlaps import DEFAULT_OVERLAP
from pgf.io.regions import Region, parse_region, read_bed
from pgf.io.writers import resolve_format
from pgf.models.base import SequenceModel
from pgf.models.registry import BUILTIN
from pgf.models.targets import Target, parse_target
from pgf.workflows.batch import batch_size
from pgf.workflows.common import resolve_dtype
from pgf.workflows.interpret import MethodOptions, check_options, effective_options, needs_compute_method
from pgf.workflows.kernels import DEFAULT_KERNELS
from pgf.workflows.methods import DEFAULT_METHOD
from pgf.workflows.shards import parse_shard
from pgf.workflows.windows import window_spans


@dataclass
class AttributeRequest:
    """Everything `pgf attribute` was asked to do."""

    fasta: Path
    output: Path
    regions: list[str] = field(default_factory=list)
    bed: Path | None = None
    model: str = BUILTIN
    target: str | None = None
    target_window: str | None = None
    vocab: str | None = None
    method: str = DEFAULT_METHOD
    method_options: MethodOptions | None = None  # --baseline, --steps, --ism-window, --rc-average ... (pgf.workflows.interpret)
    engine: str = DEFAULT_ENGINE
    device: str = "auto"
    tile: int | None = None
    offload: bool | None = None  # None: automatic (when layer inputs would not fit on the GPU)
    batch_size: int | None = None
    window: int | None = None
    stride: int | None = None
    dtype: str = "float32"
    fmt: str | None = None
    overlap: str = DEFAULT_OVERLAP  # bedGraph/bigWig: one value per base of overlapping regions (pgf.io.overlaps)
    force: bool = False
    kernels: str = DEFAULT_KERNELS
    resume: bool = False
    shard: str | None = None  # "K/N"
    devices: str | None = None  # "cuda:0,cuda:1", "all", "cpu,cpu"
    log_json: Path | None = None
    command_line: str | None = None  # stored as provenance
    genome_wide: bool = False  # --genome: every sequence between assembly gaps (pgf.workflows.genome_plan)
    chroms: list[str] | None = None  # --chroms (with --genome)
    exclude_chroms: str | None = None  # --exclude-chroms PATTERN (with --genome)
    dry_run: bool = False  # print the plan and a time estimate; compute and write nothing


def check_request(request: AttributeRequest) -> str:
    """Checks that need no FASTA or model; returns the output format."""
    options = effective_options(request.method, request.method_options)
    check_options(options)
    if request.window is not None and needs_compute_method(options):
        raise PgfUserError(f"--window is not supported with --method {request.method} or --rc-average; compute the regions in one pass")
    resolve_dtype(request.dtype)
    if request.tile is not None and request.tile < 1:
        raise PgfUserError("--tile must be a positive number of positions")
    _check_window_options(request)
    _check_genome_options(request)
    batch_size(request.batch_size, request.engine)
    if request.shard is not None:
        parse_shard(request.shard)
    fmt = resolve_format(request.output, request.fmt)
    check_output_path(request.output, request.force)
    _check_output_is_not_an_input(request)
    return fmt


def _check_output_is_not_an_input(request: AttributeRequest) -> None:
    """Refuse an output path that names an input (even with --force it would replace it)."""
    inputs = {
        "the FASTA": request.fasta,
        "the FASTA index": Path(f"{request.fasta}.fai"),
        "the bgzip index": Path(f"{request.fasta}.gzi"),
        "the BED file": request.bed,
    }
    output = Path(request.output).resolve()
    for what, path in inputs.items():
        if path is not None and Path(path).resolve() == output:
            raise OutputError(f"output {request.output} is {what}; choose another output path")


def _check_genome_options(request: AttributeRequest) -> None:
    """--genome takes every sequence in windows; --chroms/--exclude-chroms only choose among them."""
    if not request.genome_wide:
        if request.chroms or request.exclude_chroms:
            raise PgfUserError("--chroms and --exclude-chroms choose the sequences of --genome; add --genome")
        return
    if request.regions or request.bed is not None:
        raise PgfUserError("--genome computes every sequence; drop --region/--regions (choose sequences with --chroms)")
    if request.window is None:
        raise PgfUserError("--genome computes windows: give --window W (e.g. the model's trained context) and --stride S")


def _check_window_options(request: AttributeRequest) -> None:
    """--window/--stride are valid together and agree with --target-window and --target."""
    if request.window is None:
        if request.stride is not None:
            raise PgfUserError("--stride needs --window")
        return
    window_spans(request.window + 1, request.window, request.stride or request.window)  # validates the pair
    if request.target_window is not None:
        raise PgfUserError("--target-window and --window exclude each other: each window has its own target")
    if request.target is not None and request.target.strip().startswith("position"):
        raise PgfUserError("a position:P target names one position; it cannot be computed per window (drop --window)")


def resolve_regions(genome: Genome, specs: list[str], bed: Path | None) -> list[Region]:
    """The --region strings then the BED regions, checked against the genome; at least one."""
    regions = [parse_region(spec, genome.chrom_sizes) for spec in specs]
    if bed is not None:
        regions += read_bed(bed, genome.chrom_sizes)
    if not regions:
        raise PgfUserError("no region given: use --region CHROM:START-END (repeatable) or --regions FILE.bed")
    return regions


def resolve_target(request: AttributeRequest, model: SequenceModel, genome: Genome, regions: list[Region]) -> Target:
    """Parse --target (and --target-window) and check it can be evaluated on every region."""
    target = parse_target(request.target, model)
    if request.target_window is not None:
        window = parse_region(request.target_window, genome.chrom_sizes)
        target = target.with_window(window.chrom, window.start, window.end)
    if target.kind == "position" and len({region.chrom for region in regions}) > 1:
        raise TargetError("a position:P target names no sequence; give regions on one sequence only")
    for region in regions:
        target.check_region(region.start, region.end, str(region), chrom=region.chrom)
    return target
