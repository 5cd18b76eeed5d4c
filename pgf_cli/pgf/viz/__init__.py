"""Figures and pages built from pgf's outputs: `pgf plot` (matplotlib + logomaker) and
`pgf report` (a self-contained igv.js page, an IGV desktop session).

Imports `pgf.io` only; the optional libraries come from the `plot` and `report` extras
(`pgf.viz.extras` says how to install them when they are missing).
"""
