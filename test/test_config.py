"""The typed configuration: strict loading, overrides, diffs, and every shipped YAML loads."""
from __future__ import annotations

import pytest

from cigocc_ros import resources
from cigocc_ros.config import (
    ConfigError,
    ExperimentConfig,
    NodeConfig,
    diff,
    from_dict,
    load_experiment,
    load_node_config,
    to_dict,
)


@pytest.mark.parametrize("name", ["lite", "full"])
def test_shipped_experiment_configs_load(name):
    cfg = load_experiment(name)
    assert cfg.name == name
    assert cfg.model.num_classes == 20
    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg


def test_node_parameter_file_loads_into_the_dataclass():
    cfg = load_node_config(resources.node_params_file())
    assert isinstance(cfg, NodeConfig)
    assert cfg.device in ("auto", "cuda", "cpu")


def test_overrides_are_typed(tmp_path):
    cfg = load_experiment("lite", ["train.lr=1e-3", "grid.size=[64, 64, 8]", "data.val_sequences=[08]"])
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.grid.size == (64, 64, 8)
    assert cfg.data.val_sequences == ("8",) or cfg.data.val_sequences == ("08",)


def test_unknown_key_names_the_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodel:\n  embed_dimz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*model.embed_dimz"):
        load_experiment(path)


def test_wrong_type_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  steps: many\n")
    with pytest.raises(ConfigError, match="train.steps.*integer"):
        load_experiment(path)
    with pytest.raises(ConfigError, match="grid.size.*3 items"):
        load_experiment("lite", ["grid.size=[1, 2]"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "nope.yaml")


def test_diff_names_what_differs():
    a = ExperimentConfig()
    b = from_dict(ExperimentConfig, {"model": {"embed_dims": a.model.embed_dims + 1}, "grid": {"voxel_size": 0.4}})
    d = diff(a, b)
    assert any(line.startswith("model.embed_dims:") for line in d)
    assert any(line.startswith("grid.voxel_size:") for line in d)
    assert len(d) == 2
    assert diff(a, a) == []
