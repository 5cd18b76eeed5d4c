"""Command-line interface (Typer): parsing, progress bars, clear errors. Thin."""
