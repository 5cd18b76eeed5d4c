"""Scripts that build pgf's sample data and built-in model; run them from the repository root
as modules (`python -m scripts.NAME`) so that they import each other as `scripts.NAME`."""
