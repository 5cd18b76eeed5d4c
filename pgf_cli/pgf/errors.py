"""Exceptions that mean "the user asked for something impossible".

The CLI turns a `PgfUserError` into a one-line message and exit code 2; any
other exception is an internal error (exit code 1).
"""


class PgfUserError(Exception):
    """A mistake in the user's input (file, region, option): exit code 2."""


class GenomeError(PgfUserError):
    """The FASTA cannot be opened, indexed or read."""


class RegionError(PgfUserError):
    """A region or BED file is malformed or does not fit the genome."""


class OutputError(PgfUserError):
    """The output path or format cannot be used."""


class ModelError(PgfUserError):
    """The model cannot be found, loaded or used as asked."""


class TargetError(PgfUserError):
    """The target specification is malformed or does not fit the model or region."""
