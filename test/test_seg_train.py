"""The 2D training (`cigocc train-seg`) on real pixels, `cigocc segment`, `cigocc seg-report`, and
the hand-over of its weights to the full network (`cigocc train --init`)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cigocc_ros.config import load_experiment
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.model.checkpoint import load_weights, read_metadata
from cigocc_ros.model.cigocc import build_model
from cigocc_ros.training.seg_trainer import SegTrainer, loss_labels

SMALL = ["seg2d.crop=[64,96]", "seg2d.train.batch_size=2", "seg2d.train.steps=4", "seg2d.train.val_every=100",
         "seg2d.train.ckpt_every=2", "seg2d.train.log_every=1", 'seg2d.kitti_train_sequences=["05"]',
         "seg2d.camvid_scale=[0.3,0.5]", "seg2d.kitti_scale=[0.3,0.5]", "seg2d.camvid_eval_scale=0.3"]


def small_cfg(camvid, kitti, extra=()):
    return load_experiment("lite", [f"seg2d.camvid_root={camvid}", f"seg2d.kitti_root={kitti}", *SMALL, *extra])


def test_loss_labels_keep_sparse_labels():
    t = torch.full((1, 4, 4), 255)
    t[0, 1, 1] = 7
    t[0, 2, 2], t[0, 2, 3] = 3, 9
    np.testing.assert_array_equal(loss_labels(t, 2)[0].numpy(), [[7, 255], [255, 3]])


def test_resumed_run_matches_an_uninterrupted_one(tiny_camvid, kitti_samples, tmp_path):
    cfg = small_cfg(tiny_camvid, kitti_samples)
    a = SegTrainer(cfg, tmp_path / "a", device="cpu", log=lambda *_: None)
    hist_a = a.fit()
    b = SegTrainer(cfg, tmp_path / "b", device="cpu", log=lambda *_: None)
    b.fit(stop_at=2)
    c = SegTrainer(cfg, tmp_path / "b", device="cpu", log=lambda *_: None)
    c.resume()
    hist_c = c.fit()
    assert [h["loss"] for h in hist_a[2:]] == pytest.approx([h["loss"] for h in hist_c], rel=1e-5)
    wa, wc = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wc[k], rtol=1e-5, atol=1e-6)
    _, extra = read_metadata(tmp_path / "a" / "last.safetensors")
    assert extra["kind"] == "segmenter" and extra["step"] == 4
    assert (tmp_path / "a" / "log.jsonl").read_text().count("\n") == 4
    assert any((tmp_path / "a" / "tb").iterdir())


def test_segmenter_weights_start_the_full_network(tiny_camvid, kitti_samples, tmp_path):
    cfg = small_cfg(tiny_camvid, kitti_samples, ["seg2d.train.steps=2"])
    SegTrainer(cfg, tmp_path, device="cpu", log=lambda *_: None).fit()
    seg = load_file(str(tmp_path / "last.safetensors"))
    assert seg and all(k.startswith(("encoder.", "seg_head.")) for k in seg)
    model = build_model(load_experiment("lite"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_weights(model, tmp_path / "last.safetensors", partial="file")
    assert sorted(loaded) == sorted(seg)
    state = model.state_dict()
    for k, v in seg.items():
        torch.testing.assert_close(state[k], v)
    changed = [k for k in seg if not torch.equal(before[k], seg[k])]
    assert changed  # two steps moved the weights
    untouched = [k for k in state if k not in seg]
    assert untouched and all(torch.equal(state[k], before[k]) for k in untouched)


def test_train_seg_segment_and_report_commands(tiny_camvid, kitti_samples, tmp_path):
    run = tmp_path / "run"
    env_cmd = [sys.executable, "-m", "cigocc_ros.cli"]
    r = subprocess.run([*env_cmd, "train-seg", "--camvid", str(tiny_camvid), "--kitti", str(kitti_samples),
                        "--out", str(run), *sum((["--set", s] for s in SMALL), []), "--set", "seg2d.train.steps=2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    weights = run / "last.safetensors"
    img = kitti_samples / "sequences" / "05" / "image_2" / "000000.png"
    jpg = sorted((tiny_camvid / "test" / "images").iterdir())[0]
    out = tmp_path / "seg"
    r = subprocess.run([*env_cmd, "segment", str(img), str(jpg), "--out", str(out), "--weights", str(weights)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for src in (img, jpg):
        lab = sk.read_image(out / f"{src.stem}.png", rgb=False)
        assert lab.dtype == np.uint8 and lab.shape == sk.read_image(src).shape[:2]
        assert lab.max() < 20
        assert sk.read_image(out / f"{src.stem}_overlay.png").shape == sk.read_image(src).shape
    bad = tmp_path / "bad.png"
    bad.write_bytes(img.read_bytes()[:3000])
    r = subprocess.run([*env_cmd, "segment", str(bad), "--out", str(out), "--weights", str(weights)],
                       capture_output=True, text=True, timeout=300)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "bad.png" in errors[0] and "Traceback" not in r.stderr
    r = subprocess.run([*env_cmd, "seg-report", "--weights", str(weights), "--camvid", str(tiny_camvid),
                        "--kitti", str(kitti_samples), "--held-out", "07", "--prior-sequences", "05",
                        "--out", str(tmp_path / "rep")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "location prior" in report and "CamVid mIoU" in report and "KITTI 07 (5 frames" in report
