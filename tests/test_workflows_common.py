"""What the workflows share (pgf.workflows.common)."""

from types import SimpleNamespace

import pytest
import torch

import pgf.workflows.common as common
from pgf.errors import PgfUserError


class Recorder(common.SilentReporter):
    def __init__(self):
        self.said = []

    def warn(self, message):
        self.said.append(("warn", message))

    def info(self, message):
        self.said.append(("info", message))


def test_resolve_device_and_dtype():
    assert common.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(PgfUserError, match="unknown device 'tpu'"):
        common.resolve_device("tpu")
    assert common.resolve_dtype("float64") is torch.float64
    with pytest.raises(PgfUserError, match=r"^unknown dtype 'half'; choose one of: float32, float64$"):
        common.resolve_dtype("half")


def test_peak_memory_on_cpu():
    peak, kind = common.peak_memory(torch.device("cpu"))
    assert kind == "peak RSS" and peak > 0


@pytest.mark.parametrize(
    "trained, note, said",
    [
        (False, "random untrained model", [("warn", "model 'm' is a random untrained model")]),
        (True, "a demonstration", [("info", "model 'm': a demonstration")]),
        (True, "", []),
    ],
)
def test_model_notes(monkeypatch, trained, note, said):
    loaded = SimpleNamespace(info=SimpleNamespace(trained=trained, note=note, model_id="m"))
    monkeypatch.setattr(common, "load_model", lambda spec, device, dtype, vocab: loaded)
    reporter = Recorder()
    assert common.load_model_for_user("m", torch.device("cpu"), torch.float32, None, reporter) is loaded
    assert reporter.said == said
