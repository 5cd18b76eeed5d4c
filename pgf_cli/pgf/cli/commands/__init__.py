"""One module per `pgf` command; pgf.cli.app registers them."""
