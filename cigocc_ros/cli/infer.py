"""`cigocc infer`: camera images -> predicted voxel labels and pictures of them.

Input: a KITTI / SemanticKITTI sequence folder (calib.txt + image_2, or the grayscale image_0
when no colour images exist), or explicit image files with a calib.txt. Output per frame:
`NNNNNN.label` (uint16 raw SemanticKITTI ids, the submission format) and `NNNNNN.png` (the
image, a bird's-eye view and a 3D view of the occupancy, SemanticKITTI palette).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from .. import viz
from ..data import semantic_kitti as sk
from ..inference import Predictor, default_weights, predict_images
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="a sequence folder, or image files (with --calib)")
    p.add_argument("--weights", default="", help="checkpoint (.safetensors), or an exported .onnx for "
                   "--backend onnxruntime; default: shipped weights")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                   help="run the network in torch, or an exported ONNX file in ONNX Runtime")
    p.add_argument("--calib", default="", help="calib.txt for image-file inputs")
    p.add_argument("--camera", default="auto", choices=["auto", "image_0", "image_1", "image_2", "image_3"])
    p.add_argument("--out", default="outputs/infer", help="output folder")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)
    p.add_argument("--every", type=int, default=1, help="use every n-th frame of a sequence")
    p.add_argument("--no-render", action="store_true", help="write labels only")


def run(args: argparse.Namespace) -> int:
    first = Path(args.inputs[0])
    if first.is_dir():
        seq = sk.SequencePaths.at(first)
        p_key, files = seq.camera_images(args.camera)
        calib = sk.read_calib(seq.calib)
        files = files[:: max(1, args.every)]
    else:
        if not args.calib:
            raise SystemExit("image-file inputs need --calib calib.txt (P2 and Tr)")
        calib, files = sk.read_calib(args.calib), [Path(f) for f in args.inputs]
        p_key = "P2"
    try:
        predictor = Predictor.load(args.weights or default_weights(), args.device, args.backend)
    except (ImportError, ValueError, FileNotFoundError, RuntimeError) as e:
        raise SystemExit(f"cigocc infer: {e}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f, image, pred in tqdm(predict_images(predictor, files, calib, p_key), total=len(files),
                               desc="infer", dynamic_ncols=True):
        sk.write_prediction(out / f"{f.stem}.label", pred.labels)
        if not args.no_render:
            viz.save_png(out / f"{f.stem}.png", viz.prediction_panel(image, pred.labels))
    print(f"wrote {len(files)} frame(s) to {out}")
    return 0
