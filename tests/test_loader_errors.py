"""Loader error paths not covered elsewhere, and small model-library options."""

import json

import pytest
import torch

from pgf.errors import ModelError
from pgf.models.caduceus import CaduceusBlock, CaduceusConfig, CaduceusLM
from pgf.models.mamba import BiMambaMixer
from pgf.models.registry import load_checkpoint, load_model
from pgf.models.tokens import CADUCEUS, PLANT_CADUCEUS, parse_vocabulary
from mixers import bimamba, bimamba_tiled


def test_config_must_be_an_object(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="must hold a JSON object"):
        load_checkpoint(tmp_path)


def test_bin_must_hold_a_state_dict(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "pgf-track-ssm"}))
    torch.save([torch.zeros(2)], tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelError, match="does not hold a state dict of tensors"):
        load_checkpoint(tmp_path)


def test_hf_activation_must_be_silu(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_act": "gelu", "pgf_vocab": "A=0,C=1,G=2,T=3,N=4"}))
    with pytest.raises(ModelError, match="hidden_act 'gelu' is not supported"):
        load_checkpoint(tmp_path)


def test_track_config_with_wrong_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "pgf-track-ssm", "d_model": "wide"}))
    with pytest.raises(ModelError, match="config.json"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("A7,C8,G9,T10,N11", "expected A=ID"),
        ("A=7,C=8,G=9,T=10,X=11", "expected A=ID"),
        ({"A": 7, "C": 8, "G": 9, "T": "ten", "N": 11}, "must be whole numbers"),
        ({"A": 7, "C": 8, "G": 9, "T": 10}, "lacks a token id for N"),
    ],
)
def test_bad_vocabularies(text, message):
    with pytest.raises(ModelError, match=message):
        parse_vocabulary(text)


def test_vocabulary_forms():
    assert parse_vocabulary("a=7, c:8,G=9,t=10,N=11") == CADUCEUS
    assert parse_vocabulary({"a": 3, "c": 4, "g": 5, "t": 6, "n": 2}) == PLANT_CADUCEUS


def test_plant_caduceus_vocabulary_is_detected():
    plant = CaduceusLM(CaduceusConfig(d_model=8, n_layer=1, vocab_size=7, rcps=True, complement_map={3: 6, 4: 5, 5: 4, 6: 3}))
    assert plant.vocabulary == PLANT_CADUCEUS
    assert plant.complement_vocabulary.base_ids == (6, 5, 4, 3)  # complements of a c g t
    assert plant.config.padded_vocab_size == 8
    human = CaduceusLM(CaduceusConfig(d_model=8, n_layer=1))
    assert human.vocabulary == CADUCEUS


def test_ew_multiply_strategy():
    torch.manual_seed(0)
    mixer = BiMambaMixer(8, d_state=4, strategy="ew_multiply").double()
    h = torch.randn(1, 20, 8, dtype=torch.float64)
    expected = mixer.mamba_fwd(h) * mixer.mamba_rev(h.flip(1)).flip(1)
    torch.testing.assert_close(bimamba(mixer, h), expected)
    torch.testing.assert_close(bimamba_tiled(mixer, h, 6), expected)
    with pytest.raises(ValueError, match="unknown bidirectional strategy"):
        BiMambaMixer(8, strategy="concat")


@pytest.mark.parametrize("rcps", [False, True])
def test_residual_in_fp32_is_honoured(rcps):
    config = CaduceusConfig(d_model=8, n_layer=1, residual_in_fp32=True, rcps=rcps, complement_map={7: 10, 8: 9, 9: 8, 10: 7})
    block = CaduceusBlock(config).to(torch.bfloat16)
    width = 16 if rcps else 8
    hidden = torch.randn(1, 10, width, dtype=torch.bfloat16)
    layer = block.tiled()
    assert layer.skip(hidden).dtype == torch.float32
    assert layer.whole(hidden).dtype == torch.float32
    plain = CaduceusBlock(CaduceusConfig(d_model=8, n_layer=1, rcps=rcps, complement_map=config.complement_map)).to(torch.bfloat16)
    assert plain.tiled().skip(hidden).dtype == torch.bfloat16


def test_random_test_model_on_device_and_dtype():
    loaded = load_model("random-test", device="cpu", dtype=torch.float64)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float64}
