"""pgf: exact per-base input sensitivities of selective state-space DNA models.

Layers (imports point down only): cli -> workflows -> io, models, engine -> pgf_kernels.
"""

__version__ = "0.1.0"
