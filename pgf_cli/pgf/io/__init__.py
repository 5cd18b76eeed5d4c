"""Genome input (FASTA, regions, one-hot) and track output (HDF5, bedGraph, bigWig)."""
