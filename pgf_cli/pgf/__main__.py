"""`python -m pgf` runs the command-line interface."""

from pgf.cli.app import main

main()
