"""Benchmarks and the built-in model's evaluation; run them from the repository root as modules
(`python -m bench.NAME`) so that they import each other as `bench.NAME`."""
