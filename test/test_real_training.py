"""The data side of training on real frames: targets from `cigocc make-targets` mixed with
synthetic frames (cigocc_ros/data/mixed.py), the sim-to-real augmentations (data/augment.py)
keeping image and calibration consistent, and a few training steps on CPU."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cigocc_ros import cli
from cigocc_ros.config import ConfigError, load_experiment
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.augment import photometric
from cigocc_ros.data.dataset import SemanticKittiDataset
from cigocc_ros.data.mixed import MixedDataset, training_sets
from cigocc_ros.geometry import camera_from_calib

SMALL = ["model.image_size=[128, 448]", "model.depth_bins=16", "model.max_queries=256",
         "model.embed_dims=32", "model.unet_channels=16", "model.seg_channels=16",
         "train.steps=2", "train.lr=0.001", "loss.ssc_scale=2", "data.num_workers=0", "data.train_sequences=[\"00\"]",
         "data.val_sequences=[\"00\"]"]
AUGMENT = ["data.exposure=0.7", "data.gamma=0.25", "data.white_balance=0.1", "data.blur_prob=0.5",
           "data.noise_std=0.03", "data.scale_range=[0.85, 1.1]", "data.crop_shift=[8, 40]",
           "data.stereo=true", "data.stereo_drop=0.5"]


@pytest.fixture(scope="module")
def roots(kitti_samples, tmp_path_factory):
    """(synthetic root with one labelled frame, real root with frames of 09, 10 and 07)."""
    base = tmp_path_factory.mktemp("real_training")
    assert cli.main(["synth", "--root", str(base / "synth"), "--sequences", "00", "--seeds", "5",
                     "--frames", "1"]) == 0
    seqs = [str(kitti_samples / "sequences" / s) for s in ("09", "10", "07")]
    assert cli.main(["make-targets", *seqs, "--out", str(base / "real"), "--frames", "8"]) == 0
    return base / "synth", base / "real"


def _cfg(roots, *extra):
    synth, real = roots
    return load_experiment("lite", [*SMALL, f"data.root={synth}", f"data.real_root={real}",
                                    "data.real_train_sequences=[\"09\", \"10\"]",
                                    "data.real_val_sequences=[\"07\"]", *extra])


def test_mix_of_real_and_synthetic_frames(roots):
    train, val = training_sets(_cfg(roots, "data.real_share=0.8"))
    assert isinstance(train, MixedDataset)
    # 1 synthetic frame, 2 real frames repeated round(0.8 / 0.2 * 1 / 2) = 2 times.
    assert len(train) == 1 + 2 * 2
    sources = [train.source(i) for i in range(len(train))]
    assert sum(str(roots[1]) == s for s in sources) == 4
    assert [train.frame_info(i) for i in range(1, 5)] == [("09", "000008"), ("10", "000008")] * 2
    assert len(val) == 1 and val.frame_info(0) == ("07", "000008") and not val.augment
    item = train[3]
    assert int(item["index"]) == 3 and item["target"].shape == (256, 256, 32)
    with pytest.raises(ConfigError, match="hold the validation sequence out"):
        training_sets(_cfg(roots, "data.real_val_sequences=[\"09\"]"))


def test_geometric_augmentation_keeps_pixels_on_their_rays(roots, kitti_samples):
    """With rescaling and a shifted crop, each output pixel shows what the original image shows
    along the same ray (K_orig K_aug^-1 maps it back); a wrong K would fail by many grey levels."""
    cfg = _cfg(roots, "data.scale_range=[0.8, 0.8]", "data.crop_shift=[6, 30]", "data.flip_prob=0.0",
               "data.color_jitter=0.0")
    ds = SemanticKittiDataset(dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, root=cfg.data.real_root, train_sequences=("09",))), "train", augment=True)
    torch.manual_seed(3)
    item = ds[0]
    img = (item["img"].numpy().transpose(1, 2, 0) * 255).astype(np.float32)
    K_aug = item["K"].double().numpy()
    seq = sk.SequencePaths(kitti_samples, "09")
    orig = sk.read_image(seq.image(8, 2)).astype(np.float32)
    K = camera_from_calib(sk.read_calib(seq.calib)["P2"], sk.read_calib(seq.calib)["Tr"], orig.shape[:2]).K
    assert K_aug[0, 0] == pytest.approx(0.8 * K[0, 0], rel=0.01)
    H, W = img.shape[:2]
    v, u = np.mgrid[10:H - 10:7, 10:W - 10:7].reshape(2, -1)
    src = K @ np.linalg.solve(K_aug, np.stack([u, v, np.ones_like(u)]).astype(np.float64))
    us, vs = np.round(src[0] / src[2]).astype(int), np.round(src[1] / src[2]).astype(int)
    ok = (us >= 0) & (us < orig.shape[1]) & (vs >= 0) & (vs < orig.shape[0]) & (img[v, u].sum(1) > 0)
    diff = np.abs(img[v[ok], u[ok]] - orig[vs[ok], us[ok]]).mean()
    shifted = np.abs(img[v[ok], u[ok]] - orig[np.clip(vs[ok] + 4, 0, orig.shape[0] - 1),
                                               np.clip(us[ok] + 4, 0, orig.shape[1] - 1)]).mean()
    assert ok.sum() > 500 and diff < 8.0 and diff < 0.6 * shifted


def test_photometric_augmentation_changes_the_image_within_range():
    cfg = load_experiment("lite", AUGMENT).data
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).uniform(0.2, 0.8, (40, 60, 3)).astype(np.float32)
    outs = [photometric(img, cfg, rng) for _ in range(8)]
    assert all(o.dtype == np.float32 and o.min() >= 0 and o.max() <= 1 for o in outs)
    means = [o.mean() for o in outs]
    assert np.ptp(means) > 0.05  # exposure / gamma vary the brightness between draws
    off = dataclasses.replace(cfg, exposure=0.0, gamma=0.0, white_balance=0.0, blur_prob=0.0, noise_std=0.0)
    np.testing.assert_array_equal(photometric(img, off, rng), img)


@pytest.mark.slow
def test_a_few_training_steps_on_mixed_frames(roots, tmp_path, capsys):
    from cigocc_ros.training.trainer import Trainer

    torch.set_num_threads(2)
    cfg = _cfg(roots, *AUGMENT, "data.real_share=0.5")
    train, val = training_sets(cfg)
    trainer = Trainer(cfg, tmp_path / "run", train, val, device="cpu")
    history = trainer.fit(2)
    assert len(history) == 2 and all(np.isfinite(h["total"]) for h in history)
    metrics = trainer.validate()
    # validate() reports the figures of the model's own predictions on the val frames, counted
    # here voxel by voxel (a range check would pass any number).
    from by_hand import ssc_figures

    from cigocc_ros.data.dataset import collate
    from cigocc_ros.evaluation.split import predict_labels

    trainer.model.eval()
    with torch.no_grad():
        preds = [predict_labels(trainer.model, collate([val[i]]))[0].numpy() for i in range(len(val))]
    targets = [val[i]["target"].numpy() for i in range(len(val))]
    assert {k: metrics[k] for k in ("iou", "miou")} == pytest.approx(ssc_figures(preds, targets), abs=1e-6)
    assert (tmp_path / "run" / "last.safetensors").is_file()
    # Fine-tuning starts from these weights through `cigocc train --init`, here with a term
    # they lack (the stereo free space): their tensors load, the new one starts at zero.
    rc = cli.main(["train", "--config", "lite", *sum((["--set", s] for s in SMALL), []),
                   "--set", f"data.root={roots[0]}", "--set", "train.steps=1", "--no-val",
                   "--set", "model.stereo_free_space=true",
                   "--init", str(tmp_path / "run" / "last.safetensors"), "--out", str(tmp_path / "ft"),
                   "--device", "cpu"])
    assert rc == 0 and (tmp_path / "ft" / "last.safetensors").is_file()
    log = capsys.readouterr().out
    assert "model.stereo_free_space" in log and "evidence.free.bias" in log


def test_init_weights_that_do_not_fit_end_in_one_line(roots, tmp_path, capsys):
    from model_fixtures import tiny_checkpoint

    weights = tiny_checkpoint(tmp_path / "tiny.safetensors")  # another grid and image size
    rc = cli.main(["train", "--config", "lite", *sum((["--set", s] for s in SMALL), []),
                   "--set", f"data.root={roots[0]}", "--no-val", "--init", str(weights),
                   "--out", str(tmp_path / "ft"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error:") and "tiny.safetensors" in err[-1]
