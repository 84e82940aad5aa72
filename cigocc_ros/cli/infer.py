"""`cigocc infer`: camera images -> predicted voxel labels and pictures of them.

Input: a KITTI / SemanticKITTI sequence folder (calib.txt + image_2, or the grayscale image_0
when no colour images exist), or explicit image files with a calib.txt. Output per frame:
`NNNNNN.label` (uint16 raw SemanticKITTI ids, the submission format) and `NNNNNN.png` (the
image, a bird's-eye view and a 3D view of the occupancy, SemanticKITTI palette).
Stereo (`--stereo` for a sequence folder: image_3 beside image_2; `--right` files beside image
files): StereoSGBM depth of the pair as the network's external depth input, the node's stereo
path. User mistakes (a calib without Tr or P3, a missing image, a right image of another size,
a missing checkpoint, a cut image) end in one `error:` line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .. import viz
from ..data import semantic_kitti as sk
from ..errors import CigoccError
from ..inference import Predictor, default_weights, predict_images
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="a sequence folder, or image files (with --calib)")
    p.add_argument("--weights", default="", help="checkpoint (.safetensors), or an exported .onnx for "
                   "--backend onnxruntime; default: shipped weights")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "auto"],
                   help="run the network in torch, or an exported ONNX file in ONNX Runtime; auto: ONNX "
                   "Runtime when an export of the weights is present (cigocc export --cache), else torch")
    p.add_argument("--calib", default="", help="calib.txt for image-file inputs (P2, Tr; P3 for --right)")
    p.add_argument("--camera", default="auto", choices=["auto", "image_0", "image_1", "image_2", "image_3"])
    p.add_argument("--stereo", action="store_true", help="sequence folder: add StereoSGBM depth from "
                   "the right camera (image_3 for image_2, image_1 for image_0), the node's stereo mode")
    p.add_argument("--right", nargs="+", default=None, help="right image files, one per input image "
                   "(stereo for image-file inputs)")
    p.add_argument("--out", default="outputs/infer", help="output folder")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)
    p.add_argument("--every", type=int, default=1, help="use every n-th frame of a sequence")
    p.add_argument("--no-render", action="store_true", help="write labels only")


RIGHT_OF = {"P2": ("P3", "image_3"), "P0": ("P1", "image_1")}


class InputError(CigoccError, ValueError):
    """A user mistake in the inputs of `cigocc infer`; printed as one line, exit code 2."""


def resolve_inputs(args: argparse.Namespace) -> tuple[dict, str, list[Path], list[Path] | None]:
    """(calib, P key of the input camera, image files, right image files or None) from the
    arguments; every user mistake raises InputError / DataFormatError naming the file."""
    first = Path(args.inputs[0])
    right: list[Path] | None = None
    if first.is_dir():
        if len(args.inputs) > 1:
            raise InputError("give one sequence folder, or image files with --calib")
        if args.right:
            raise InputError("--right is for image-file inputs; a sequence folder takes --stereo")
        seq = sk.SequencePaths.at(first)
        try:
            p_key, files = seq.camera_images(args.camera)
        except FileNotFoundError as e:
            raise InputError(str(e)) from None
        files = files[:: max(1, args.every)]
        calib_path = seq.calib
        if args.stereo:
            if p_key not in RIGHT_OF:
                raise InputError(f"--stereo needs the left camera (image_2 or image_0), not {p_key}")
            right = [first / RIGHT_OF[p_key][1] / f.name for f in files]
    else:
        if args.stereo and not args.right:
            raise InputError("image-file inputs take the right images with --right")
        if not args.calib:
            raise InputError("image-file inputs need --calib calib.txt (P2 and Tr)")
        files, p_key, calib_path = [Path(f) for f in args.inputs], "P2", Path(args.calib)
        if args.right:
            if len(args.right) != len(files):
                raise InputError(f"{len(files)} image(s) but {len(args.right)} --right image(s)")
            right = [Path(f) for f in args.right]
    calib = sk.read_calib(calib_path, required=(p_key, "Tr") + ((RIGHT_OF[p_key][0],) if right else ()))
    for f in files + (right or []):
        if not f.is_file():
            raise InputError(f"image not found: {f}")
    for f, r in zip(files, right or [], strict=False):
        hw_l, hw_r = sk.image_size(f), sk.image_size(r)
        if hw_l != hw_r:
            raise InputError(f"{r}: right image is {hw_r[1]}x{hw_r[0]}, left {f} is {hw_l[1]}x{hw_l[0]}")
    return calib, p_key, files, right


def run(args: argparse.Namespace) -> int:
    # Bad inputs (InputError, DataFormatError, CheckpointError, DeviceError, a missing file)
    # are one error line of cli/main.py, here and while predicting.
    calib, p_key, files, right = resolve_inputs(args)
    try:
        predictor = Predictor.load(args.weights or default_weights(), args.device, args.backend, stereo=bool(right))
    except ImportError as e:  # onnxruntime, optional
        print(f"error: {e}", file=sys.stderr)
        return 2
    if right and not predictor.takes_depth:
        raise InputError(f"{args.weights}: exported without a depth input: cigocc export --stereo")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = predict_images(predictor, files, calib, p_key, right, RIGHT_OF.get(p_key, ("P3",))[0])
    # delay: no bar before the first frames are done, so an input that fails at once (a cut
    # image) leaves just its error line.
    for f, image, pred in tqdm(frames, total=len(files), desc="infer", dynamic_ncols=True, delay=2.0):
        sk.write_prediction(out / f"{f.stem}.label", pred.labels)
        if not args.no_render:
            viz.save_png(out / f"{f.stem}.png", viz.prediction_panel(image, pred.labels))
    print(f"wrote {len(files)} frame(s) to {out}" + (" (stereo)" if right is not None else ""))
    return 0
