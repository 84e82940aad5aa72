"""The frozen image side and its feature cache (training/feature_cache.py, issue 22): a cached
sample gives the network what encoding its image gives; frozen weights and BatchNorm statistics
do not move; a run with the cache resumes exactly; the cache is reused from its folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_data import tiny_config

from cigocc_ros.config import ConfigError
from cigocc_ros.data.dataset import SemanticKittiDataset, collate
from cigocc_ros.training.feature_cache import FeatureCache
from cigocc_ros.training.trainer import Trainer


def _trainer(cfg, out: Path) -> Trainer:
    return Trainer(cfg, out, SemanticKittiDataset(cfg, "train"), None, device="cpu", log=lambda *a: None)


def frozen(root, tmp_path, *extra):
    return tiny_config(root, ["train.image_lr=0", "train.feature_cache=2", f"train.cache_dir={tmp_path / 'cache'}",
                              "data.stereo=true", "data.stereo_drop=0.5", *extra])


def test_cached_features_give_the_same_forward_as_the_image(tiny_dataset, tmp_path):
    cfg = frozen(tiny_dataset, tmp_path)
    tr = _trainer(cfg, tmp_path / "run")
    cache = FeatureCache(tr.train_samples.dataset, tr.model, cfg, 2, tmp_path / "cache")
    model = tr.model.eval()
    frame = cache.frame_of[0]
    for v in range(2):
        cached = collate([cache.item(frame, v)])
        assert "img" not in cached and "feats_0" in cached and cached["feats_0"].dtype == torch.float32
        with torch.no_grad():
            ref = model(collate([cache.sample(frame, v)]))  # the same augmented sample, image encoded
            got = model(cached)
        for key in ("ssc_logits", "aux_logits", "depth_logits"):
            assert (got[key] - ref[key]).abs().max() < 0.05 * ref[key].abs().max(), key
            assert (got[key].argmax(1) == ref[key].argmax(1)).float().mean() > 0.98, key


def test_frozen_training_with_the_cache_resumes_exactly_and_keeps_the_image_side(tiny_dataset, tmp_path):
    cfg = frozen(tiny_dataset, tmp_path, "train.steps=6", "train.ckpt_every=3")
    a = _trainer(cfg, tmp_path / "a")
    image_before = {k: v.clone() for k, v in a.model.state_dict().items() if k.startswith(("encoder.", "seg_head."))}
    full = a.fit()
    assert isinstance(a.train_samples, FeatureCache)
    files = sorted((tmp_path / "cache" / a.train_samples.key).glob("*.safetensors"))
    assert len(files) == 2 * len(a.train_samples.index_of) == 2 * len(a.train_samples.dataset)
    for k, v in a.model.state_dict().items():
        if k in image_before:  # weights and BatchNorm running statistics alike
            assert torch.equal(v, image_before[k]), k
    b = _trainer(cfg, tmp_path / "b")
    b.fit(stop_at=3)
    c = _trainer(cfg, tmp_path / "b")
    c.resume(tmp_path / "b")
    rest = c.fit()  # reads the variants back from the folder
    assert [h["total"] for h in full[3:]] == pytest.approx([h["total"] for h in rest], rel=1e-6)
    assert len(sorted((tmp_path / "cache" / c.train_samples.key).glob("*.safetensors"))) == len(files)


def test_the_cache_needs_a_frozen_image_side(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, ["train.feature_cache=2"])
    with pytest.raises(ConfigError, match="image_lr"):
        _trainer(cfg, tmp_path / "x")


def test_the_cache_key_ignores_the_mix_and_follows_what_shapes_a_sample(tiny_dataset, tmp_path):
    from cigocc_ros.training.feature_cache import cache_key

    base = frozen(tiny_dataset, tmp_path)
    model = _trainer(base, tmp_path / "k").model
    key = cache_key(model, base, 2)
    assert cache_key(model, frozen(tiny_dataset, tmp_path, "data.real_share=0.9"), 2) == key
    assert cache_key(model, frozen(tiny_dataset, tmp_path, "train.steps=99"), 2) == key
    assert cache_key(model, frozen(tiny_dataset, tmp_path, "data.exposure=0.3"), 2) != key
    assert cache_key(model, base, 3) != key
    with torch.no_grad():
        model.encoder.output[0][0].weight.add_(1.0)  # other frozen weights: other features
    assert cache_key(model, base, 2) != key


def test_the_evidence_term_and_the_image_side_get_their_own_learning_rates(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, ["train.image_lr=0.1", "train.evidence_lr=30", "train.lr=0.001"])
    tr = _trainer(cfg, tmp_path / "run")
    # The schedule starts every group at the same fraction of its peak: compare the peaks.
    lr_of = {id(p): g["max_lr"] for g in tr.opt.param_groups for p in g["params"]}
    names = [n for n, _ in tr.model.named_parameters()]
    assert any(n.startswith("evidence.") for n in names)
    for name, p in tr.model.named_parameters():
        want = 0.03 if name.startswith("evidence.") else 0.0001 if name.startswith(("encoder.", "seg_head.")) else 0.001
        assert lr_of[id(p)] == pytest.approx(want), name
