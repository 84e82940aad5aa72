"""Checkpoints: safetensors + config in the metadata; save -> load is exact; another config fails
with the differing keys named; nothing is unpickled."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from model_fixtures import make_batch, tiny_config

from cigocc_ros.config import to_dict
from cigocc_ros.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    read_metadata,
    save_checkpoint,
)
from cigocc_ros.model.cigocc import build_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg)
    # Move BN statistics away from their defaults so that buffers are checked too.
    model.train()(make_batch(cfg, 1))
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(path, model, cfg, extra={"step": 7, "metrics": {"miou": 0.1}})
    return cfg, model, path


def test_save_load_gives_identical_outputs(saved):
    cfg, model, path = saved
    loaded, extra = load_checkpoint(path, cfg=cfg)
    assert extra == {"step": 7, "metrics": {"miou": 0.1}}
    assert to_dict(loaded.cfg) == to_dict(cfg)
    batch = make_batch(cfg, 1, seed=3)
    with torch.no_grad():
        a, b = model(batch), loaded.eval()(batch)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_different_config_fails_naming_the_keys(saved):
    cfg, _, path = saved
    other = tiny_config("lite", "model.embed_dims=32", "grid.size=[32, 32, 16]")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, cfg=other)
    assert "model.embed_dims: 32 != 64" in str(e.value) and "grid.size" in str(e.value)
    with pytest.raises(CheckpointError, match="model.embed_dims"):
        load_weights(build_model(other), path)
    # Training settings do not shape the tensors: a fine-tune config loads.
    load_checkpoint(path, cfg=tiny_config("lite", "train.lr=0.00001", "model.pretrained_path=x.safetensors"))


def test_config_is_stored_as_json_metadata(saved):
    cfg, _, path = saved
    stored, extra = read_metadata(path)
    assert to_dict(stored) == to_dict(cfg) and extra["step"] == 7
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["config"])["model"]["backbone"] == cfg.model.backbone


def test_pickles_and_garbage_are_refused(tmp_path):
    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (exec, ("raise SystemExit('unpickled')",))

    pkl = tmp_path / "evil.safetensors"
    pkl.write_bytes(pickle.dumps({"x": Boom()}))
    with pytest.raises(CheckpointError, match="evil.safetensors"):
        load_checkpoint(pkl)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no cigocc_ros config"):
        load_checkpoint(plain)
