"""Options shared by the commands are declared once (pgf.cli.options), so they read the same everywhere."""

import typer.main

from pgf.cli.app import app

SHARED = {
    "fasta": ("attribute", "effect", "check"),
    "model": ("attribute", "effect", "check"),
    "vocab": ("attribute", "effect", "check"),
    "device": ("attribute", "effect", "check"),
    "dtype": ("attribute", "effect", "check"),
    "kernels": ("attribute", "effect", "check"),
    "target": ("attribute", "check"),
    "force": ("attribute", "effect"),
    "quiet": ("attribute", "effect"),
}


def describe(param) -> tuple:
    return (tuple(param.opts), param.metavar, getattr(param, "help", None), param.default, param.required)


def test_shared_options_are_identical():
    group = typer.main.get_command(app)
    commands = {name: {p.name: p for p in group.commands[name].params} for name in ("attribute", "effect", "check")}
    for name, users in SHARED.items():
        seen = {describe(commands[command][name]) for command in users}
        assert len(seen) == 1, (name, seen)


def test_region_and_tile_keep_their_flags():
    group = typer.main.get_command(app)
    for command in ("attribute", "effect", "check"):
        params = {p.name: p for p in group.commands[command].params}
        assert params["region"].opts == ["--region", "-r"] and params["region"].metavar == "REGION"
        assert params["tile"].opts == ["--tile"] and params["tile"].metavar == "N"
    # --help lists the options in the order they always had
    order = [p.name for p in group.commands["attribute"].params]
    assert order[:7] == ["fasta", "region", "regions", "genome", "chroms", "exclude_chroms", "model"] and order[-5:] == ["output", "fmt", "overlap", "force", "quiet"]
    order = [p.name for p in group.commands["effect"].params]
    assert order[:3] == ["fasta", "region", "variant"] and order.index("output") == order.index("channel") + 1


def all_commands() -> dict:
    """{command path: {parameter name: parameter}} of every command, sub-commands included ("export modisco")."""
    group = typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        for sub_name, sub in getattr(command, "commands", {}).items():
            found[f"{name} {sub_name}"] = {p.name: p for p in sub.params}
        if not hasattr(command, "commands"):
            found[name] = {p.name: p for p in command.params}
    return found


def test_options_of_the_output_commands_are_identical():
    commands = all_commands()
    shared = {
        "h5": ("plot", "report", "export modisco"),
        "bed": ("plot", "report"),
        "fmt": ("attribute", "merge"),
        "force": ("attribute", "effect", "plot", "report", "export modisco", "merge"),
        "quiet": ("attribute", "effect", "plot", "report", "export modisco", "merge"),
    }
    for name, users in shared.items():
        seen = {describe(commands[command][name]) for command in users}
        assert len(seen) == 1, (name, seen)
    for command, params in commands.items():  # -o is --output wherever a command writes one
        outputs = [p for p in params.values() if "-o" in p.opts]
        assert [p.opts for p in outputs] in ([], [["--output", "-o"]]), command
    assert commands["effect"]["vcf"].opts == commands["report"]["vcf"].opts == ["--vcf"]
    assert commands["effect"]["vcf"].metavar == commands["report"]["vcf"].metavar == "VCF"
