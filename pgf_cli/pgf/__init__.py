"""pgf: exact per-base input sensitivities of selective state-space DNA models.

Layers (imports point down only): cli -> workflows -> io, models, engine -> pgf_kernels.
"""

__version__ = "0.1.0"

# The Python API (pgf.api) is imported on first use, so that `import pgf` (the CLI) stays light.
_API = ("load_model", "gradients", "effects", "ism", "integrated_gradients", "expected_gradients")


def __getattr__(name: str):
    if name in _API:
        from pgf import api

        return getattr(api, name)
    raise AttributeError(f"module 'pgf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
