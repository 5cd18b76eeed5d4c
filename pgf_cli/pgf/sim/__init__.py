"""Simulated genomes with a known regulatory grammar (ground truth for the built-in model).

numpy only; used by the scripts that make the sample genome, train the
built-in model and evaluate its attributions against the planted truth.
"""
