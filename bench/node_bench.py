"""Benchmark of cigocc_node (not a test): what the ROS layer adds on top of the model.

1. model forward alone: `Predictor.predict` in this process on real KITTI colour frames;
2. end to end: each frame, right after its forward-alone run, published to a `cigocc_node`
   process over DDS, timed from publish to the SemanticOccupancy received (one frame in flight
   at a time, so no queueing); the node's own forward and latency figures from /diagnostics;
3. output building for a 256x256x32 grid: occupied voxels + MarkerArray + PointCloud2 +
   SemanticOccupancy + the 2D costmap (and its OccupancyGrid message), on the prediction of a
   real frame and on a dense street-like grid; the costmap's camera view (built once per
   camera geometry) separately;
4. decoding a compressed camera frame (sensor_msgs/CompressedImage, JPEG quality 95 and PNG
   level 3 as `kitti-to-bag --compressed` writes them) next to converting the raw bgr8 Image.

    scripts/in-env.sh python bench/node_bench.py                  # lite, random weights, CPU
    scripts/in-env.sh python bench/node_bench.py --weights weights/lite.safetensors --device cuda
    scripts/in-env.sh python bench/node_bench.py --weights weights/cigocc_lite.safetensors --stereo --segmentation

`--stereo` runs the node in stereo mode (the right colour camera too: StereoSGBM depth into the
pseudo-LiDAR path) and `--segmentation` subscribes to ~/segmentation (the segmentation branch's
per-pixel labels); the forward-alone figures then include the same work (stereo matching,
segmentation labels). "network forward" is the model alone on the cropped frame (no pre- or
post-processing, no stereo matching): the figure the end-to-end target is a multiple of.

Random weights take the same time as trained ones (same shapes), except that the number of
occupied voxels (marker and cloud size) depends on the prediction: figure 3 reports both grids.
"""
from __future__ import annotations

import argparse
import array
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_KITTI = Path(os.environ.get("CIGOCC_KITTI_SAMPLES", REPO.parent / "shared" / "kitti_samples")) / "sequences" / "00"
DDS_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def load_frames(kitti: Path, n: int, camera: str = "image_2", p_key: str = "P2"):
    """n (bgr image, P (3, 4), T_cam2_velo (4, 4), K (3, 3)) of a KITTI colour camera of sequence
    00 (image_2 / P2: left; image_3 / P3: right)."""
    import cv2

    from cigocc_ros.data.semantic_kitti import read_calib
    from cigocc_ros.geometry import camera_from_calib

    calib = read_calib(kitti / "calib.txt")
    files = sorted((kitti / camera).glob("*.png"))[:n]
    if not files:
        raise SystemExit(f"no KITTI colour frames in {kitti / camera}")
    bgr = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    cam = camera_from_calib(calib["P2"], calib["Tr"], bgr[0].shape[:2])
    return bgr, calib[p_key], cam.T_cam_grid, cam.K


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1e3, q))


class ForwardAlone:
    """The node's work without the node, in this process: Predictor.predict (with the stereo
    depth of the pair first when `baseline` is given, and the segmentation labels when
    `segmentation`), and the network forward alone on the same frame."""

    def __init__(self, ckpt: Path, device: str, K, T, backend: str = "torch", baseline: float | None = None,
                 segmentation: bool = False) -> None:
        from cigocc_ros.inference import Predictor

        self.pred = Predictor.load(ckpt, device, backend)
        self.pred.warmup()
        self.K, self.T, self.device = K, T, device
        self.segmentation = segmentation and self.pred.has_segmentation
        self.stereo = None
        if baseline is not None:
            from cigocc_ros.stereo import StereoDepth

            self.stereo = StereoDepth(float(K[0, 0]), baseline)
        self.labels = None
        self.network: list[float] = []  # seconds of the network forward alone, one per call

    def __call__(self, bgr, right=None) -> float:
        import torch

        from cigocc_ros.geometry import crop_or_pad

        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        depth = conf = None
        t0 = time.perf_counter()
        if self.stereo is not None:
            res = self.stereo.match(rgb, np.ascontiguousarray(right[:, :, ::-1]))
            depth, conf = res.depth, res.confidence
        out = self.pred.predict(rgb, self.K, self.T, depth=depth, depth_conf=conf, segmentation=self.segmentation)
        if self.pred.device.type == "cuda":
            torch.cuda.synchronize()
        took = time.perf_counter() - t0
        self.labels = out.labels
        # The network alone on the same (cropped) inputs: what the end-to-end target is a multiple of.
        img, K2 = crop_or_pad(rgb, self.K, self.pred.image_size)
        dev = self.pred.device
        x = torch.from_numpy(img).to(dev).permute(2, 0, 1)[None].float().div(255)
        Kt, Tt = (torch.from_numpy(np.asarray(a, np.float32))[None].to(dev) for a in (K2, self.T))
        d = c = None
        if depth is not None:
            d, _ = crop_or_pad(depth, self.K, self.pred.image_size)
            c, _ = crop_or_pad(conf, self.K, self.pred.image_size)
            d, c = (torch.from_numpy(np.ascontiguousarray(a))[None, None].to(dev) for a in (d, c))
        with torch.inference_mode():
            t1 = time.perf_counter()
            self.pred.forward(x, Kt, Tt, d, c)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            self.network.append(time.perf_counter() - t1)
        return took


def bench_node(ckpt: Path, device: str, frames, P, T, repeats: int, forward_alone, backend: str = "torch",
               right=None, segmentation: bool = False):
    """Node end to end; `forward_alone(bgr[, right bgr])` runs right before each frame is
    published, so both figures are taken under the same load (this box is shared). With `right`
    ((frames, P3)) the node runs in stereo mode; with `segmentation` ~/segmentation has a
    subscriber (so the node computes it)."""
    import rclpy
    from cigocc_msgs.msg import SemanticOccupancy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image

    domain = random.Random(time.time_ns()).randint(1, 200)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), **DDS_ENV)
    os.environ.update(DDS_ENV)
    cft = "[" + ",".join(repr(float(v)) for v in np.asarray(T).ravel()) + "]"
    log = open(Path(tempfile.gettempdir()) / "cigocc_node_bench.log", "w")
    params = {"weights": ckpt, "device": device, "camera_from_grid": cft, "backend": backend,
              "stereo": str(right is not None).lower(), "publish_segmentation": str(segmentation).lower()}
    proc = subprocess.Popen([sys.executable, "-m", "cigocc_ros.ros.main", "--ros-args",
                             *(a for k, v in params.items() for a in ("-p", f"{k}:={v}"))],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain, args=[])
    node = Node("bench_feeder", context=ctx)
    pub_img = node.create_publisher(Image, "left/image", 10)
    pub_info = node.create_publisher(CameraInfo, "left/camera_info", 10)
    pub_right = node.create_publisher(Image, "right/image", 10) if right is not None else None
    pub_rinfo = node.create_publisher(CameraInfo, "right/camera_info", 10) if right is not None else None
    got: dict[int, float] = {}
    diag: list = []
    cond = threading.Condition()

    def on_occ(msg):
        with cond:
            got[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = time.perf_counter()
            cond.notify_all()

    node.create_subscription(SemanticOccupancy, "/cigocc_node/occupancy", on_occ, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.append(m), 10)
    seg_count = [0]
    if segmentation:
        node.create_subscription(Image, "/cigocc_node/segmentation",
                                 lambda m: seg_count.__setitem__(0, seg_count[0] + 1), 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    try:
        deadline = time.time() + 180
        while node.count_subscribers("/left/image") < 1 or node.count_publishers("/cigocc_node/occupancy") < 1:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"node did not start: see {log.name}")
            time.sleep(0.2)
        time.sleep(1.0)
        e2e, fwd = [], []
        for r in range(repeats + 1):  # the first round warms DDS and the node up
            for i, bgr in enumerate(frames):
                f = forward_alone(bgr, right[0][i] if right is not None else None)
                if r > 0:
                    fwd.append(f)
                stamp = time.time_ns()
                msgs = [camera_messages(bgr, P, "camera_color_left", stamp)]
                if right is not None:
                    msgs.append(camera_messages(right[0][i], right[1], "camera_color_right", stamp))
                t0 = time.perf_counter()
                pub_info.publish(msgs[0][1])
                pub_img.publish(msgs[0][0])
                if right is not None:
                    pub_rinfo.publish(msgs[1][1])
                    pub_right.publish(msgs[1][0])
                with cond:
                    cond.wait_for(lambda s=stamp: s in got, timeout=60)
                if stamp not in got:
                    print(f"frame {stamp} got no output within 60 s (node log: {log.name})", file=sys.stderr)
                if stamp in got and r > 0:
                    e2e.append(got[stamp] - t0)
                time.sleep(0.05)
        time.sleep(1.5)
        values = {kv.key: kv.value for kv in diag[-1].status[0].values} if diag else {}
        if segmentation:
            values["segmentation_messages"] = seg_count[0]
        return e2e, fwd, values
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.terminate()
        proc.wait(10)


def camera_messages(bgr: np.ndarray, P: np.ndarray, frame_id: str, stamp: int):
    """(sensor_msgs/Image bgr8, sensor_msgs/CameraInfo) of one camera frame stamped `stamp` ns."""
    from sensor_msgs.msg import CameraInfo, Image

    h, w = bgr.shape[:2]
    info = CameraInfo(height=h, width=w, k=[float(v) for v in P[:, :3].ravel()],
                      p=[float(v) for v in P.ravel()], distortion_model="plumb_bob")
    img = Image(height=h, width=w, encoding="bgr8", step=w * 3)
    img.data = array.array("B", bgr.tobytes())
    for m in (info, img):
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 10**9)
        m.header.frame_id = frame_id
    return img, info


def bench_outputs(labels_real: np.ndarray | None, K: np.ndarray, T: np.ndarray, image_hw, model_hw,
                  repeats: int = 20) -> tuple[list[tuple[str, int, dict]], float]:
    from cigocc_ros.classes import load_class_table
    from cigocc_ros.config import GridConfig, NodeConfig
    from cigocc_ros.costmap import Costmapper, CostmapSpec
    from cigocc_ros.ros.outputs import OutputBuilder

    grid = GridConfig()
    builder = OutputBuilder(grid, load_class_table(), "velodyne", "bench")
    mapper = Costmapper(grid)
    spec = CostmapSpec.from_node_config(NodeConfig(), load_class_table())
    t0 = time.perf_counter()
    view = mapper.view(K, T, image_hw, model_hw)
    view_ms = (time.perf_counter() - t0) * 1e3
    street = np.zeros(grid.size, np.uint8)
    street[:, 64:192, 8] = 9
    street[:, :64, 8:10] = 17
    street[:, 192:, 9] = 11
    street[:, 200:230, 9:25] = 13
    rng = np.random.default_rng(0)
    for x, y in rng.integers(20, 230, (12, 2)):
        street[x:x + 20, y:y + 9, 9:17] = 1
    grids = [("street-like", street)]
    if labels_real is not None and labels_real.shape == grid.size:
        grids.insert(0, ("prediction", np.ascontiguousarray(labels_real)))
    conf = np.full(grid.size, 200, np.uint8)
    rows = []
    for name, labels in grids:
        t = {"occupied": [], "markers": [], "cloud": [], "occupancy": [], "costmap": [], "total": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            occ = builder.occupied(labels)
            t1 = time.perf_counter()
            builder.markers(labels, T, 0, "camera", 51.2, 1, occ)
            t2 = time.perf_counter()
            builder.cloud(labels, conf, 0, occ)
            t3 = time.perf_counter()
            builder.occupancy(labels, conf, 0)
            t4 = time.perf_counter()
            builder.costmap(mapper.compute(labels, conf, spec, view), 0)
            t5 = time.perf_counter()
            for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True):
                t[k].append(v)
        rows.append((name, int(len(occ.idx)), {k: pct(v, 50) for k, v in t.items()}))
    return rows, view_ms


def bench_decode(frames, P: np.ndarray, repeats: int = 10) -> list[tuple[str, float, float]]:
    """(transport, payload KB, p50 ms per frame of frame_input.to_rgb: decode + checks)."""
    import cv2
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from cigocc_ros.ros import frame_input as fi

    h, w = frames[0].shape[:2]
    info = CameraInfo(height=h, width=w, k=[float(v) for v in P[:, :3].ravel()], p=[float(v) for v in P.ravel()])
    encoders = {"jpeg q95": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), "png level 3": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3])}
    msgs: dict[str, list] = {"raw bgr8": []}
    for bgr in frames:
        img = Image(height=h, width=w, encoding="bgr8", step=w * 3)
        img.data = array.array("B", bgr.tobytes())
        msgs["raw bgr8"].append(img)
        for name, (ext, flags) in encoders.items():
            msg = CompressedImage(format=f"bgr8; {name.split()[0]} compressed bgr8")
            msg.data = array.array("B", cv2.imencode(ext, bgr, flags)[1].tobytes())
            msgs.setdefault(name, []).append(msg)
    rows = []
    for name, ms in msgs.items():
        times = []
        for _ in range(repeats):
            for m in ms:
                t0 = time.perf_counter()
                fi.to_rgb(m, info, "left/image", "left/camera_info")
                times.append(time.perf_counter() - t0)
        rows.append((name, float(np.mean([len(m.data) for m in ms])) / 1024, pct(times, 50)))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="lite", help="experiment config for random weights (no --weights)")
    p.add_argument("--weights", default="", help="checkpoint; default: random weights of --config")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--frames", type=int, default=5, help="KITTI colour frames used")
    p.add_argument("--repeats", type=int, default=2, help="passes over the frames")
    p.add_argument("--kitti", type=Path, default=DEFAULT_KITTI)
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                   help="the node's backend (--weights then names an exported .onnx)")
    p.add_argument("--stereo", action="store_true", help="stereo mode: the right colour camera too (pseudo-LiDAR path)")
    p.add_argument("--segmentation", action="store_true", help="subscribe to ~/segmentation (segmentation output)")
    p.add_argument("--no-model", action="store_true",
                   help="only figures 3 (street-like grid) and 4: no model, no node (seconds instead of minutes)")
    args = p.parse_args()

    import torch

    frames, P, T, K = load_frames(args.kitti, args.frames)
    if args.no_model:
        from cigocc_ros.config import load_experiment

        model_hw = tuple(load_experiment(args.config).model.image_size)
        outputs, view_ms = bench_outputs(None, K, T, frames[0].shape[:2], model_hw)
        print(f"# cigocc_node benchmark, outputs and decoding only: {os.cpu_count()} CPUs, {len(frames)} KITTI frames")
        report_outputs(outputs, view_ms, bench_decode(frames, P), frames)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.weights) if args.weights else Path(tmp) / "random.safetensors"
        if not args.weights:
            from cigocc_ros.config import load_experiment
            from cigocc_ros.model.checkpoint import save_checkpoint
            from cigocc_ros.model.cigocc import build_model

            torch.manual_seed(0)
            cfg = load_experiment(args.config)
            save_checkpoint(ckpt, build_model(cfg), cfg)
        right = None
        if args.stereo:
            from cigocc_ros.geometry import stereo_baseline

            rframes, P3, _, _ = load_frames(args.kitti, args.frames, "image_3", "P3")
            right = (rframes, P3)
        alone = ForwardAlone(ckpt, args.device, K, T, args.backend,
                             stereo_baseline(P, right[1]) if right else None, args.segmentation)
        cfg = alone.pred.cfg
        e2e, fwd, diag = bench_node(ckpt, args.device, frames, P, T, args.repeats, alone, args.backend, right,
                                    args.segmentation)
    outputs, view_ms = bench_outputs(alone.labels, K, T, frames[0].shape[:2], tuple(cfg.model.image_size))
    decode = bench_decode(frames, P)

    mode = ("stereo" if args.stereo else "mono") + (" + segmentation" if args.segmentation else "")
    print(f"# cigocc_node benchmark: config {cfg.name}, image {tuple(cfg.model.image_size)}, grid {tuple(cfg.grid.size)}, "
          f"device {args.device}, backend {args.backend}, {mode}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, {len(frames)} KITTI frames x {args.repeats}")
    net = alone.network[-len(fwd):] if fwd else []
    if net:
        print(f"network forward alone: p50 {pct(net, 50):.1f} ms, p95 {pct(net, 95):.1f} ms (n={len(net)})")
    print(f"node's work alone ({'stereo matching + ' if args.stereo else ''}Predictor.predict): "
          f"p50 {pct(fwd, 50):.1f} ms, p95 {pct(fwd, 95):.1f} ms (n={len(fwd)})")
    if e2e:
        print(f"end to end (publish -> occupancy received): p50 {pct(e2e, 50):.1f} ms, p95 {pct(e2e, 95):.1f} ms (n={len(e2e)})")
        over = pct(e2e, 50) - pct(fwd, 50)
        print(f"end to end - node's work alone: {over:.1f} ms = {100 * over / pct(fwd, 50):.1f} %")
        if net:
            print(f"end to end / network forward (p50): {pct(e2e, 50) / pct(net, 50):.2f}x")
    if diag:
        nf, nl = float(diag["forward_p50_ms"]), float(diag["latency_p50_ms"])
        print(f"node's own diagnostics (last 100 frames incl. warm-up): forward p50 {nf:.1f} ms, latency p50 "
              f"(image stamp -> outputs published) {nl:.1f} ms: in-node overhead {nl - nf:.1f} ms = "
              f"{100 * (nl - nf) / nf:.1f} %; frames in/out/dropped {diag.get('frames_in')}/{diag.get('frames_out')}/"
              f"{diag.get('frames_dropped')}")
        if e2e:
            over = pct(e2e, 50) - nf
            print(f"end to end - the node's forward: {over:.1f} ms = {100 * over / nf:.1f} % (DDS both ways included)")
    report_outputs(outputs, view_ms, decode, frames)
    return 0


def report_outputs(outputs, view_ms, decode, frames) -> None:
    for name, n, t in outputs:
        print(f"outputs for a 256x256x32 grid ({name}, {n} occupied voxels): total {t['total']:.2f} ms "
              f"(occupied {t['occupied']:.2f}, markers {t['markers']:.2f}, cloud {t['cloud']:.2f}, "
              f"occupancy {t['occupancy']:.2f}, costmap {t['costmap']:.2f})")
    print(f"costmap camera view (frustum of a 256x256x32 grid, per column; once per camera geometry): {view_ms:.1f} ms")
    for name, kb, ms in decode:
        print(f"camera frame {frames[0].shape[1]}x{frames[0].shape[0]} {name}: {kb:.0f} KB, to RGB p50 {ms:.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
