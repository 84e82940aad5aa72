"""The synthetic SemanticKITTI: its renders agree with its labels, it is deterministic, the
SemanticKITTI reader reads everything it writes, and its LiDAR lands in its occupied voxels.

One short sequence (6 frames: labelled frames 0 and 5). Properties that do not need full-size
images are checked on half-size renders (K scaled with the image)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cigocc_ros import cli
from cigocc_ros.classes import IGNORE_LABEL, load_class_table
from cigocc_ros.config import load_experiment
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data import synthetic as syn
from cigocc_ros.data.synthetic import make_scene
from cigocc_ros.geometry import project, stereo_baseline

SEED = 7
FRAMES = 6


@pytest.fixture(scope="module")
def rendered():
    """(sequence, frames, voxel truth of frames 0 and 5) at half image size."""
    seq = syn.SyntheticSequence(SEED, FRAMES, image_scale=0.5)
    frames = [seq.render(i) for i in range(FRAMES)]
    truth = {i: seq.voxels(i) for i in seq.labelled_frames}
    return seq, frames, truth


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A full-size sequence 00 written by `cigocc synth`."""
    root = tmp_path_factory.mktemp("synthetic")
    rc = cli.main(["synth", "--root", str(root), "--sequences", "00", "--seeds", str(SEED),
                   "--frames", str(FRAMES)])
    assert rc == 0
    return root


def _voxel_index(points: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    idx = np.floor((points[:, :3] - np.asarray(grid.origin)) / grid.voxel_size).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(grid.size)), axis=1)
    return idx, inside


def test_scene_covers_the_classes():
    """Every one of the 19 classes appears in a default-length scene's solids or ground."""
    scene = make_scene(SEED, syn.DEFAULT_FRAMES)
    xy = np.stack(np.meshgrid(np.linspace(-60, 160, 400), np.linspace(-100, 100, 400)), -1).reshape(-1, 2)
    present = set(scene.prims.label.tolist()) | set(scene.ground_labels(xy).tolist())
    # Parked two-wheelers and riders are rarer than the rest: look over a few seeds for them.
    for s in range(SEED + 1, SEED + 4):
        present |= set(make_scene(s, syn.DEFAULT_FRAMES).prims.label.tolist())
    assert present == set(range(1, 20)), f"missing classes {set(range(1, 20)) - present}"


def test_render_agrees_with_voxel_labels(rendered):
    """Labelled, valid voxels seen by the left camera (the rendered depth at their projected
    centre within 0.3 m of theirs) show their own class in the rendered class image at >= 90 %
    (measured about 97-99 %; misses are voxels on a class boundary)."""
    seq, frames, truth = rendered
    cam = seq.cameras[0]
    H, W = cam.image_size
    classes_checked = set()
    for i, v in truth.items():
        f = frames[i]
        idx = np.argwhere((v.labels > 0) & ~v.invalid)
        centres = (idx + 0.5) * seq.grid.voxel_size + np.asarray(seq.grid.origin)
        uv, z = project(centres, cam.K, cam.T_cam_grid)
        u = np.round(uv[:, 0]).astype(np.int64)
        r = np.round(uv[:, 1]).astype(np.int64)
        ok = (z > 1.0) & (u >= 0) & (u < W) & (r >= 0) & (r < H)
        idx, u, r, z = idx[ok], u[ok], r[ok], z[ok]
        seen = np.abs(f.depth[r, u] - z) < 0.3
        assert seen.sum() > 1000, f"frame {i}: only {seen.sum()} labelled voxels visible"
        lab = v.labels[tuple(idx[seen].T)]
        agree = f.classes[r[seen], u[seen]] == lab
        assert agree.mean() >= 0.90, f"frame {i}: render/label agreement {agree.mean():.3f}"
        classes_checked |= set(np.unique(lab).tolist())
    assert len(classes_checked) >= 8, f"too few classes in view: {sorted(classes_checked)}"


def test_lidar_lands_in_occupied_voxels(rendered):
    """Scan points voxelised (floor((p - origin) / 0.2)) fall in occupied voxels of the truth
    (>= 98 %, measured > 99 %) and mostly carry the voxel's class (>= 95 %)."""
    seq, frames, truth = rendered
    for i, v in truth.items():
        f = frames[i]
        idx, inside = _voxel_index(f.points, seq.grid)
        assert inside.sum() > 20000
        lab = v.labels[tuple(idx[inside].T)]
        occupied = (lab > 0).mean()
        agree = (lab == f.point_labels[inside]).mean()
        assert occupied >= 0.98, f"frame {i}: {occupied:.4f} of the points in occupied voxels"
        assert agree >= 0.95, f"frame {i}: {agree:.4f} of the points agree with their voxel's class"
        # Observed by this scan: a point's voxel is neither invalid nor free.
        assert not v.invalid[tuple(idx[inside].T)].mean() > 0.02
        assert v.occupancy[tuple(idx[inside].T)].mean() > 0.9  # the .bin input is this scan


def test_masks_are_consistent(rendered):
    """invalid is a subset of occluded, the scan's own voxels are occluded (SemanticKITTI's
    convention), and both masks are partial, not all or nothing."""
    _, _, truth = rendered
    for v in truth.values():
        assert not (v.invalid & ~v.occluded).any()
        assert not (v.occupancy & ~v.occluded).any()
        assert 0.05 < v.invalid.mean() < 0.9
        assert v.occupancy.sum() > 2000


def test_deterministic(rendered):
    """Same seed -> identical frames and truth; a longer sequence of the seed starts with the
    same frames; another seed -> another scene."""
    seq, frames, truth = rendered
    again = syn.SyntheticSequence(SEED, FRAMES + 5, image_scale=0.5)
    f = again.render(3)
    ref = frames[3]
    assert np.array_equal(f.image_left, ref.image_left) and np.array_equal(f.image_right, ref.image_right)
    assert np.array_equal(f.points, ref.points) and np.array_equal(f.point_labels, ref.point_labels)
    assert np.array_equal(f.classes, ref.classes) and np.array_equal(f.depth, ref.depth)
    assert np.allclose(again.poses[:FRAMES], seq.poses)
    labels = syn.voxel_labels(again.scene, again.scene.velo_poses[5], again.grid)
    assert np.array_equal(labels, truth[5].labels)
    other = syn.SyntheticSequence(SEED + 1, 2, image_scale=0.5).render(0)
    assert not np.array_equal(other.classes, frames[0].classes)


def test_stereo_pair_is_kitti_geometry(rendered):
    """P2/P3 have a 0.54 m baseline, and the right image is the left one shifted by the
    disparity f * B / z (checked on the class images, which carry no noise)."""
    seq, frames, _ = rendered
    B = stereo_baseline(seq.calib["P2"], seq.calib["P3"])
    assert 0.52 < B < 0.55  # KITTI: 0.53-0.54 m by set-up
    f = frames[2]
    # The right image's class ids (the frame keeps only the left's): compare through the disparity.
    r_cls = seq._render_camera(seq.cameras[1], seq._cam_dirs[1], seq.scene.velo_poses[2], np.random.default_rng(0))[3]
    H, W = f.depth.shape
    v, u = np.mgrid[0:H, 0:W]
    ok = f.depth > 2.0
    disp = seq.cameras[0].K[0, 0] * B / f.depth[ok]
    ur = np.round(u[ok] - disp).astype(np.int64)
    inside = (ur >= 0) & (ur < W)
    match = r_cls[v[ok][inside], ur[inside]] == f.classes[ok][inside]
    assert match.mean() > 0.9


def test_reader_reads_every_file_written(written):
    """Every file `cigocc synth` wrote reads back with the SemanticKITTI readers, and the
    training Dataset yields samples from it."""
    paths = sk.SequencePaths(written, "00")
    calib = sk.read_calib(paths.calib)
    size, published = syn.kitti_calibration(syn.calibration_index(SEED))
    for key in ("P0", "P1", "P2", "P3", "Tr"):
        np.testing.assert_allclose(calib[key], published[key], rtol=1e-9)
    poses = sk.read_poses(paths.poses)
    times = sk.read_times(paths.times)
    assert poses.shape == (FRAMES, 4, 4) and np.allclose(poses[0], np.eye(4), atol=1e-9)
    assert np.allclose(np.diff(times), 0.1)
    assert poses[-1, 2, 3] > 1.0  # the ego drives forward (cam0 z)
    table = load_class_table()
    files = 0
    for i in range(FRAMES):
        for cam in (2, 3):
            img = sk.read_image(paths.image(i, cam))
            assert img.shape == (*size, 3) and img.dtype == np.uint8
            files += 1
        scan = sk.read_scan(paths.scan(i))
        sem, inst = sk.read_point_labels(paths.point_labels(i), len(scan))
        assert len(scan) > 50000
        lab = sk.remap_labels(sem)
        assert not (lab == IGNORE_LABEL).any() and not (lab == 0).any()
        assert set(np.unique(sem).tolist()) <= set(table.learning_map_inv.tolist())
        assert inst[lab == 9].max(initial=0) == 0 and inst[lab == 1].min(initial=1) > 0
        mask = sk.read_teacher_mask(paths.teacher_mask(i))
        assert mask.shape == size and mask.max() < 20  # every pixel has a class, sky = 0
        assert (mask == 0).any() and (mask == 9).any()
        files += 3  # scan, labels, teacher mask
    for stem in paths.frames("voxels", ".label"):
        vox = sk.read_voxels(paths.voxel_stem(stem))
        assert all(a is not None for a in (vox.labels, vox.invalid, vox.occluded, vox.occupancy))
        target = sk.remap_labels(vox.labels, vox.invalid)
        assert set(np.unique(target).tolist()) - {0, IGNORE_LABEL}
        files += 4
    assert paths.frames("voxels", ".label") == ["000000", "000005"]
    # poses.txt follows KITTI's convention: frame 5's scan moved into frame 0's velodyne frame
    # (Tr^-1 P0^-1 P5 Tr) lands on frame 0's occupied voxels.
    Tr = np.eye(4)
    Tr[:3] = calib["Tr"]
    T_0_5 = np.linalg.inv(Tr) @ np.linalg.inv(poses[0]) @ poses[5] @ Tr
    pts = sk.read_scan(paths.scan(5))[:, :3] @ T_0_5[:3, :3].T + T_0_5[:3, 3]
    idx, inside = _voxel_index(pts, load_experiment("lite").grid)
    labels0 = sk.read_voxels(paths.voxel_stem(0)).labels
    assert (labels0[tuple(idx[inside].T)] > 0).mean() > 0.97
    written_files = [p for p in paths.dir.rglob("*") if p.is_file()]
    assert len(written_files) == files + 3  # + calib, poses, times

    from cigocc_ros.data.dataset import SemanticKittiDataset

    cfg = load_experiment("lite")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(written), train_sequences=("00",)))
    ds = SemanticKittiDataset(cfg, "train", augment=False)
    assert len(ds) == 2
    item = ds[1]
    assert tuple(item["target"].shape) == tuple(cfg.grid.size)
    assert int((item["depth_target"] > 0).sum()) > 5000
    assert int((item["teacher"] != IGNORE_LABEL).sum()) > 0


def test_preview_writes_a_picture(written, tmp_path):
    import cv2

    out = tmp_path / "p.png"
    assert cli.main(["preview", "--root", str(written), "--sequence", "00", "--frame", "5", "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    size, _ = syn.kitti_calibration(syn.calibration_index(SEED))
    assert img is not None and img.shape[0] == 3 * size[0] and img.shape[1] > size[1]
    assert cli.main(["preview", "--root", str(written), "--sequence", "00", "--frame", "3",
                     "--out", str(out)]) == 2  # no voxel files for an unlabelled frame


def test_default_dataset_is_reused(tmp_path):
    seeds = {"00": SEED}
    assert not syn.dataset_complete(tmp_path, seeds, 2)
    root = syn.default_dataset(tmp_path, seeds=seeds, num_frames=2)
    assert syn.dataset_complete(root, seeds, 2)
    stamp = (root / "sequences" / "00" / "voxels" / "000000.label").stat().st_mtime_ns
    syn.default_dataset(tmp_path, seeds=seeds, num_frames=2)
    assert (root / "sequences" / "00" / "voxels" / "000000.label").stat().st_mtime_ns == stamp
    assert not syn.dataset_complete(root, {"00": SEED + 1}, 2)


def test_default_root_is_the_environments_choice(tmp_path, monkeypatch, repo_root):
    """The environment says where the default dataset lives, not where the code is installed:
    $CIGOCC_SYNTHETIC_ROOT, else synthetic-v<format> in $CIGOCC_DATA_DIR, else in
    ~/.cache/cigocc; the project environment (scripts/setup.sh writes it) points $CIGOCC_DATA_DIR
    at the checkout's data/."""
    import os
    import subprocess

    name = f"synthetic-v{syn.FORMAT_VERSION}"
    monkeypatch.delenv("CIGOCC_SYNTHETIC_ROOT", raising=False)
    monkeypatch.delenv("CIGOCC_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert syn.default_root() == tmp_path / "home" / ".cache" / "cigocc" / name
    monkeypatch.setenv("CIGOCC_DATA_DIR", str(tmp_path / "data"))
    assert syn.default_root() == tmp_path / "data" / name
    monkeypatch.setenv("CIGOCC_SYNTHETIC_ROOT", str(tmp_path / "mine"))
    assert syn.default_root() == tmp_path / "mine"
    env = {k: v for k, v in os.environ.items() if k != "CIGOCC_DATA_DIR"}
    res = subprocess.run([str(repo_root / "scripts" / "in-env.sh"), "printenv", "CIGOCC_DATA_DIR"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == str(repo_root / "data"), res.stderr


def test_terrain_hits_match_ray_marching():
    """The exact piecewise ray / terrain intersection agrees with a fine march (1 cm steps)."""
    from cigocc_ros.data.synthetic.raycast import terrain_hits
    from cigocc_ros.data.synthetic.scene import make_terrain

    rng = np.random.default_rng(0)
    terrain = make_terrain(np.random.default_rng(3), 0.0, -100.0, 150.0)
    origin = np.array([20.0, 5.0, 0.0])
    origin[2] = terrain.height(origin[None, :2])[0] + 1.73
    d = rng.normal(size=(60, 3))
    d[:, 2] = rng.uniform(-0.3, 0.05, 60)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t = terrain_hits(terrain, origin, d, 200.0)
    steps = np.arange(0.0, 200.0, 0.01)
    for j in range(len(d)):
        p = origin + steps[:, None] * d[j]
        under = np.flatnonzero(p[:, 2] <= terrain.height(p[:, :2]))
        ref = steps[under[0]] if under.size else np.inf
        assert (np.isinf(ref) and np.isinf(t[j])) or abs(ref - t[j]) < 0.011, (j, ref, t[j])
    assert np.isfinite(t).sum() > 30


def test_world_is_not_flat():
    """Over the default sequences' labelled frames the ground (road, parking, sidewalk,
    other-ground, terrain voxels) is spread over many grid layers, no layer holds most of it,
    the ego climbs or descends by decimetres to metres, and the three KITTI camera set-ups
    all occur."""
    from cigocc_ros.config import GridConfig

    grid = GridConfig()
    hist = np.zeros(grid.size[2])
    climb = []
    for seed in (1000, 1004):
        scene = make_scene(seed, syn.DEFAULT_FRAMES)
        for i in (0, 25, 45):
            lab = syn.voxel_labels(scene, scene.velo_poses[i], grid)
            hist += np.bincount(np.nonzero(np.isin(lab, [9, 10, 11, 12, 17]))[2], minlength=grid.size[2])
        climb.append(np.ptp(scene.velo_poses[:, 2, 3]))
    share = hist / hist.sum()
    assert share.max() < 0.4, share
    assert (share > 0.02).sum() >= 6, share
    assert max(climb) > 1.0
    assert {syn.calibration_index(int(s)) for s in syn.DEFAULT_SEEDS.values()} == {0, 1, 2}
    sizes = {syn.kitti_calibration(i)[0] for i in range(3)}
    assert sizes == {(376, 1241), (375, 1242), (370, 1226)}
