"""Training, resume, DDP and the eval / infer commands on the tiny dataset (test/tiny_data.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from by_hand import ssc_figures
from tiny_data import tiny_config

from cigocc_ros.cli import main as cli
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.dataset import SemanticKittiDataset
from cigocc_ros.training.trainer import Trainer, sample_indices


def _trainer(cfg, out: Path) -> Trainer:
    return Trainer(cfg, out, SemanticKittiDataset(cfg, "train"), SemanticKittiDataset(cfg, "val"),
                   device="cpu", log=lambda *a: None)


def test_sample_order_is_a_pure_function_of_seed_and_step():
    a = [sample_indices(7, s, 2, 1, 0, seed=3) for s in range(7)]
    assert a == [sample_indices(7, s, 2, 1, 0, seed=3) for s in range(7)]
    flat = [i for b in a for i in b]
    assert sorted(flat[:7]) == list(range(7))  # the first epoch visits every sample once
    # Two ranks split the same global batch.
    both = sample_indices(7, 4, 1, 2, 0, 3) + sample_indices(7, 4, 1, 2, 1, 3)
    assert sorted(both) == sorted(sample_indices(7, 4, 2, 1, 0, 3))


def test_short_run_lowers_loss_then_eval_and_infer_load_the_checkpoint(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, ["train.steps=16"])
    run = tmp_path / "run"
    history = _trainer(cfg, run).fit()
    losses = [h["total"] for h in history]
    assert len(losses) == 16 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4]), losses
    ckpt = run / "last.safetensors"
    assert ckpt.is_file() and (run / "last.state.safetensors").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*")), "no TensorBoard scalars"

    out = tmp_path / "metrics.json"
    assert cli(["eval", str(ckpt), "--data", str(tiny_dataset), "--split", "val", "--device", "cpu",
                "--out", str(out), "--submission", str(tmp_path / "sub")]) == 0
    m = json.loads(out.read_text())
    assert m["frames"] == 2 and set(m["per_class"]) >= {"car", "road", "traffic-sign"}
    # The figures are those of the predictions it wrote, counted here voxel by voxel.
    val = SemanticKittiDataset(cfg, "val", augment=False)
    targets = [val.target(i) for i in range(len(val))]
    preds = [sk.remap_labels(sk.read_voxel_labels(
        sk.SequencePaths(tmp_path / "sub", val.frame_info(i)[0]).prediction(val.frame_info(i)[1]), (32, 32, 8)))
        for i in range(len(val))]
    assert {k: m[k] for k in ("iou", "miou")} == pytest.approx(ssc_figures(preds, targets), abs=1e-6)
    # The controls are scored on the same frames; the prior of the train split is cached.
    assert set(m["controls"]) == {"shuffled image", "flat ground", "voxel prior"}
    # Flat ground: road in the layer holding z = -1.73 m (KITTI's LiDAR height), counted here.
    g = cfg.grid
    flat = np.zeros(tuple(g.size), np.uint8)
    flat[:, :, int(np.floor((-1.73 - g.origin[2]) / g.voxel_size))] = 9
    by_hand = ssc_figures([flat] * len(targets), targets)
    assert {k: m["controls"]["flat ground"][k] for k in ("iou", "miou")} == pytest.approx(by_hand, abs=1e-6)
    assert list((tiny_dataset / ".cigocc-controls").glob("prior-*.npz"))
    assert (tmp_path / "sub" / "sequences" / "01" / "predictions" / "000005.label").stat().st_size == 32 * 32 * 8 * 2

    seq = tiny_dataset / "sequences" / "01"
    assert cli(["infer", str(seq), "--weights", str(ckpt), "--out", str(tmp_path / "infer"), "--device", "cpu"]) == 0
    labels = sk.read_voxel_labels(tmp_path / "infer" / "000000.label", (32, 32, 8))
    assert labels.shape == (32, 32, 8)
    png = sk.read_image(tmp_path / "infer" / "000000.png")
    assert png.shape[0] == 120 and png.shape[1] > 400  # image | BEV | 3D view


def test_resume_continues_exactly(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, ["train.steps=6", "train.ckpt_every=3"])
    full = _trainer(cfg, tmp_path / "a").fit()
    first = _trainer(cfg, tmp_path / "b")
    first.fit(stop_at=3)
    second = _trainer(cfg, tmp_path / "b")
    second.resume(tmp_path / "b")
    assert second.step == 3
    rest = second.fit()
    assert [h["total"] for h in full[3:]] == [h["total"] for h in rest]
    a = _trainer(cfg, tmp_path / "a2")
    a.resume(tmp_path / "a")
    for (n, p), q in zip(a.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


def test_resume_refuses_another_config(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, ["train.steps=1"])
    _trainer(cfg, tmp_path / "r").fit()
    other = _trainer(tiny_config(tiny_dataset, ["train.steps=1", "train.lr=0.1"]), tmp_path / "r")
    with pytest.raises(ValueError, match="another config"):
        other.resume(tmp_path / "r")


DDP_SCRIPT = r"""
import gc, sys, torch
sys.path.insert(0, sys.argv[3])
from tiny_data import tiny_config
from cigocc_ros.data.dataset import SemanticKittiDataset
from cigocc_ros.model.losses import compute_losses
from cigocc_ros.training.trainer import Trainer, init_distributed, train
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

destroy = dist.destroy_process_group


def destroy_and_count_wrappers():  # what leave_process_group must have released by then
    gc.collect()
    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    with open(f"{sys.argv[2]}/wrappers_alive_at_destroy.{dist.get_rank()}", "w") as f:
        f.write(str(alive))
    destroy()


dist.destroy_process_group = destroy_and_count_wrappers
cfg = tiny_config(sys.argv[1])
info = init_distributed(torch.device("cpu"))
t = Trainer(cfg, sys.argv[2], SemanticKittiDataset(cfg, "train"), None, device="cpu", dist_info=info)
batch = t._batch(0)
losses = compute_losses(t.ddp(batch), batch, cfg)
losses["total"].backward()
if info.main:
    grads = {n: p.grad for n, p in t.model.named_parameters() if p.grad is not None}
    from safetensors.torch import save_file
    save_file({n: g.contiguous() for n, g in grads.items()}, sys.argv[2] + "/ddp_grads.safetensors")
del t, batch, losses
# A whole run on the same process group: train() leaves it at the end.
train(tiny_config(sys.argv[1], ["train.steps=2"]), sys.argv[2] + "/run", device="cpu", validate=False)
assert not dist.is_initialized()
"""


@pytest.mark.slow
def test_ddp_over_two_gloo_processes_matches_one_process(tiny_dataset, tmp_path, ros_env):
    """Under torchrun with two gloo ranks: the gradients of one step equal one process's on the
    same samples, and a whole train() run then ends the process group in the right order (no
    DDP wrapper left when the group is destroyed: before, both ranks still held theirs, and gloo
    once aborted with "terminate called without an active exception")."""
    from safetensors.torch import load_file

    test_dir = str(Path(__file__).resolve().parent)
    script = tmp_path / "ddp_step.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    out.mkdir()
    env = dict(ros_env, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--standalone", str(script), str(tiny_dataset), str(out), test_dir],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # train() released its DDP wrapper before destroying the process group (see
    # trainer.leave_process_group), on both ranks.
    assert [(out / f"wrappers_alive_at_destroy.{r}").read_text() for r in range(2)] == ["0", "0"]
    assert (out / "run" / "last.safetensors").is_file()
    ddp = load_file(out / "ddp_grads.safetensors")

    # One process, the same two samples of global step 0, one at a time; DDP averages gradients.
    from cigocc_ros.data.dataset import collate
    from cigocc_ros.device import to_device
    from cigocc_ros.model.losses import compute_losses

    cfg = tiny_config(tiny_dataset)
    t = Trainer(cfg, tmp_path / "single", SemanticKittiDataset(cfg, "train"), None, device="cpu",
                log=lambda *a: None)
    both = sample_indices(len(t.train_samples.dataset), 0, cfg.train.batch_size, 2, 0, cfg.train.seed) + \
        sample_indices(len(t.train_samples.dataset), 0, cfg.train.batch_size, 2, 1, cfg.train.seed)
    total: dict[str, torch.Tensor] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reduction order as the single-threaded DDP workers
    try:
        for idx in both:
            t.model.zero_grad()
            batch = to_device(collate([t.train_samples.get(idx, 0)]), t.device)
            compute_losses(t.model(batch), batch, cfg)["total"].backward()
            for n, p in t.model.named_parameters():
                if p.grad is not None:
                    total[n] = total.get(n, 0) + p.grad / len(both)
    finally:
        torch.set_num_threads(threads)
    assert set(ddp) == set(total)
    for n, g in total.items():
        torch.testing.assert_close(ddp[n], g, rtol=1e-4, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")


def test_eval_of_the_ground_truth_gives_100(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset)
    ds = SemanticKittiDataset(cfg, "val", augment=False)
    for i in range(len(ds)):
        seq, frame = ds.frame_info(i)
        target = ds[i]["target"].numpy()
        # Ignored voxels are not scored: any label will do there.
        sk.write_prediction(tmp_path / "sequences" / seq / "predictions" / f"{frame}.label",
                            np.where(target == 255, 0, target))
    out = tmp_path / "m.json"
    assert cli(["eval", "--predictions", str(tmp_path), "--data", str(tiny_dataset),
                "--out", str(out),
                "--config", str(_write_cfg(tmp_path, tiny_dataset))]) == 0
    m = json.loads(out.read_text())
    assert m["iou"] == pytest.approx(100.0) and m["miou"] == pytest.approx(100.0)
    assert all(v == pytest.approx(100.0) for v in m["per_class"].values())


def _write_cfg(tmp_path: Path, root: Path) -> Path:
    import yaml

    from cigocc_ros.config import to_dict

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(tiny_config(root))))
    return path

