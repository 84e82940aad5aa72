"""`cigocc infer`: camera images -> predicted voxel labels and pictures of them.

Input: a KITTI / SemanticKITTI sequence folder (calib.txt + image_2, or the grayscale image_0
when no colour images exist), or explicit image files with a calib.txt. Output per frame:
`NNNNNN.label` (uint16 raw SemanticKITTI ids, the submission format) and `NNNNNN.png` (the
image, a bird's-eye view and a 3D view of the occupancy, SemanticKITTI palette).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .geometry import camera_from_calib


def sequence_frames(seq: Path, camera: str = "auto") -> tuple[str, list[Path]]:
    """(P key, image files) of a sequence folder: colour image_2 if present, else image_0."""
    if camera == "auto":
        camera = "image_2" if (seq / "image_2").is_dir() else "image_0"
    files = sorted((seq / camera).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no PNG images in {seq / camera}")
    return {"image_2": "P2", "image_3": "P3", "image_0": "P0", "image_1": "P1"}[camera], files


def render_frame(image_rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The picture written per frame: image | bird's-eye view | 3D view."""
    from . import viz

    return viz.panel([image_rgb, viz.bev(labels), viz.view3d(labels)], height=image_rgb.shape[0])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="a sequence folder, or image files (with --calib)")
    p.add_argument("--weights", default="", help="checkpoint (.safetensors), or an exported .onnx for "
                   "--backend onnxruntime; default: shipped weights")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                   help="run the network in torch, or an exported ONNX file in ONNX Runtime")
    p.add_argument("--calib", default="", help="calib.txt for image-file inputs")
    p.add_argument("--camera", default="auto", choices=["auto", "image_0", "image_1", "image_2", "image_3"])
    p.add_argument("--out", default="outputs/infer", help="output folder")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--every", type=int, default=1, help="use every n-th frame of a sequence")
    p.add_argument("--no-render", action="store_true", help="write labels only")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import viz
    from .data.semantic_kitti import read_calib, read_image, write_prediction
    from .inference import Predictor, default_weights

    try:
        predictor = Predictor.load(args.weights or default_weights(), args.device, args.backend)
    except (ImportError, ValueError, FileNotFoundError, RuntimeError) as e:
        raise SystemExit(f"cigocc infer: {e}") from None
    first = Path(args.inputs[0])
    if first.is_dir():
        p_key, files = sequence_frames(first, args.camera)
        calib = read_calib(first / "calib.txt")
        files = files[:: max(1, args.every)]
    else:
        if not args.calib:
            raise SystemExit("image-file inputs need --calib calib.txt (P2 and Tr)")
        calib, files = read_calib(args.calib), [Path(f) for f in args.inputs]
        p_key = "P2"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in tqdm(files, desc="infer", dynamic_ncols=True):
        image = read_image(f)
        if image.ndim == 2:  # grayscale KITTI: the network takes three channels
            image = np.repeat(image[..., None], 3, axis=2)
        cam = camera_from_calib(calib[p_key], calib["Tr"], image.shape[:2])
        pred = predictor.predict(image, cam.K, cam.T_cam_grid)
        write_prediction(out / f"{f.stem}.label", pred.labels)
        if not args.no_render:
            viz.save_png(out / f"{f.stem}.png", render_frame(image, pred.labels))
    print(f"wrote {len(files)} frame(s) to {out}")
    return 0
