"""Options and choices shared by the commands, declared once (`typing.Annotated` aliases).

A command writes `model: ModelOption = BUILTIN`; the flag names, metavar and
help live here, so the commands that share an option cannot drift apart.
Where each command explains a shared flag in its own words (--region, --tile,
--output, --vcf), a function here declares the flags and metavar and the
command passes its help.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pgf.engine import ENGINES
from pgf.io.writers import FORMATS
from pgf.models.targets import TARGET_HELP
from pgf.workflows.common import DTYPES
from pgf.workflows.kernels import KERNELS_HELP
from pgf.workflows.interpret import ALL_METHODS
from pgf_kernels import BACKENDS


def _choices(name: str, values) -> type[Enum]:
    """A str Enum whose members are `values` (typer shows them as the option's choices)."""
    return Enum(name, {value: value for value in values}, type=str)


Method = _choices("Method", ALL_METHODS)
Baseline = _choices("Baseline", ("zeros", "uniform", "shuffle"))
EngineName = _choices("EngineName", ENGINES)
Device = _choices("Device", ("auto", "cpu", "cuda"))
Format = _choices("Format", FORMATS)
DType = _choices("DType", DTYPES)
Kernels = _choices("Kernels", BACKENDS)
EffectMode = _choices("EffectMode", ("linear", "exact", "both"))

VOCAB_HELP = "Token id of each base, A=ID,C=ID,G=ID,T=ID,N=ID (Hugging Face Mamba checkpoints need it unless config.json has pgf_vocab)."


def region_option(help: str) -> Any:
    """--region/-r REGION; each command says what the region is for."""
    return typer.Option("--region", "-r", metavar="REGION", help=help)


def tile_option(help: str) -> Any:
    """--tile N (positive); each command says what its tile means and its default."""
    return typer.Option("--tile", min=1, metavar="N", help=help)


def output_option(metavar: str, help: str) -> Any:
    """--output/-o; each command names what it writes (metavar) and says how."""
    return typer.Option("--output", "-o", metavar=metavar, help=help)


def vcf_option(help: str) -> Any:
    """--vcf VCF; each command says what the variants are for."""
    return typer.Option("--vcf", metavar="VCF", help=help)


FastaArgument = Annotated[
    Path, typer.Argument(metavar="FASTA", help="Reference FASTA (plain or bgzip); its .fai is built if missing.")
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", metavar="MODEL",
        help="'builtin', a checkpoint directory, a Hugging Face Hub id ORG/NAME[@REVISION] (known ones: pgf models "
             "list), or 'random-test' / 'random-test-mamba2' (untrained, for smoke tests).",
    ),
]
TargetOption = Annotated[Optional[str], typer.Option("--target", "-t", metavar="TARGET", help=TARGET_HELP)]
VocabOption = Annotated[Optional[str], typer.Option("--vocab", metavar="A=ID,C=ID,G=ID,T=ID,N=ID", help=VOCAB_HELP)]
# pgf models show's --vocab: the same help, without a metavar (its --help has always shown the type)
ShowVocabOption = Annotated[Optional[str], typer.Option("--vocab", help=VOCAB_HELP)]
DeviceOption = Annotated[Device, typer.Option("--device", help="Where to compute; auto = CUDA when available.")]
DTypeOption = Annotated[DType, typer.Option("--dtype", help="Compute dtype of weights and activations.")]
KernelsOption = Annotated[Kernels, typer.Option("--kernels", help=KERNELS_HELP)]
ForceOption = Annotated[
    bool, typer.Option("--force", "-f", help="Overwrite existing outputs (pgf attribute: also discard a partial output OUT.partial).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary lines.")]
FormatOption = Annotated[Optional[Format], typer.Option("--format", help="Output format, when the suffix does not say.")]


class Overlap(str, Enum):
    mean = "mean"
    max = "max"
    first = "first"
    error = "error"


# the commands that write bedGraph/bigWig tracks of regions (attribute, merge); see pgf.io.overlaps
OverlapOption = Annotated[Overlap, typer.Option(
    "--overlap",
    help="bedGraph/bigWig: one value per base where regions overlap: their mean (the default), max, the first "
         "region's (lowest start), or error (refuse).")]

# the commands that read a `pgf attribute` output (plot, report, export modisco)
H5Argument = Annotated[Path, typer.Argument(metavar="IN.h5", help="A `pgf attribute` HDF5 output.")]
BedOption = Annotated[
    Optional[Path], typer.Option("--bed", metavar="BED", help="Elements to overlay (BED: chrom, start, end, optional name).")
]

# pgf attribute's interpretation settings (pgf.workflows.interpret.MethodOptions)
BaselineOption = Annotated[
    Optional[Baseline],
    typer.Option("--baseline", help="integrated/expected-gradients baselines: zeros, uniform (0.25 per base) or shuffle "
                 "(dinucleotide shuffles of the sequence). Default: zeros for integrated-gradients, shuffle for expected-gradients."),
]
StepsOption = Annotated[int, typer.Option("--steps", min=1, metavar="M", help="integrated-gradients: Gauss-Legendre nodes on each path.")]
NBaselinesOption = Annotated[int, typer.Option("--n-baselines", min=1, metavar="K", help="integrated-gradients: baselines averaged.")]
SamplesOption = Annotated[int, typer.Option("--samples", min=1, metavar="S", help="expected-gradients: random (baseline, alpha) points.")]
SeedOption = Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the shuffles and of expected-gradients' draws.")]
IsmWindowOption = Annotated[
    Optional[str],
    typer.Option("--ism-window", metavar="REGION", help="ism: positions mutated, CHROM:START-END (1-based, inside every region; "
                 "default: the whole region)."),
]
IsmMaxOption = Annotated[
    int, typer.Option("--ism-max-positions", min=1, metavar="N", help="ism: refuse windows longer than N positions (3 forward sweeps each).")
]
RcAverageOption = Annotated[
    bool, typer.Option("--rc-average", help="Average with the reverse-complement strand (target mirrored), mapped back; "
                       "redundant for RC-equivariant models (Caduceus ps).")
]
