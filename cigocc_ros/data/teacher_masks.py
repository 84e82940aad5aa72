"""Offline teacher masks (`cigocc make-masks`, cigocc_ros/cli/make_masks.py) for the BCE distillation of the segmentation branch.

CIGOcc distils knowledge from SAM / Grounded-SAM into the segmentation branch; the teacher runs
offline, once per frame, never on the vehicle. Two ways to give SAM's class-agnostic masks a
SemanticKITTI class:

* Grounded-SAM (`--grounding-dino-config/--grounding-dino-checkpoint`): Grounding DINO finds
  boxes for a text prompt per class, SAM turns each box into a mask carrying that class.
* LiDAR voting (default, for labelled sequences): SAM's automatic masks are labelled with the
  majority class of the labelled LiDAR points (SemanticKITTI `labels/`) that project into them.

Output (read by the dataset, docs/data.md): `sequences/XX/teacher_masks/NNNNNN.png`, uint8
class ids 0-19 per pixel of image_2 (or image_0), 255 where no mask has a class.
SAM and Grounding DINO are optional dependencies: `pip install segment-anything==1.0`
(and `groundingdino-py`), plus checkpoints the user downloads; nothing is fetched here.
"""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..classes import IGNORE_LABEL, NUM_CLASSES, load_class_table
from ..errors import CigoccError
from ..geometry import camera_from_calib, project
from . import semantic_kitti as sk

# Text prompts per class for Grounding DINO (SemanticKITTI names are not all good English).
CLASS_PROMPTS = {
    1: "car", 2: "bicycle", 3: "motorcycle", 4: "truck", 5: "bus . trailer . van", 6: "person",
    7: "cyclist", 8: "motorcyclist", 9: "road", 10: "parking lot", 11: "sidewalk",
    12: "ground", 13: "building", 14: "fence", 15: "vegetation . tree . bush", 16: "tree trunk",
    17: "grass . terrain", 18: "pole", 19: "traffic sign",
}


class MissingDependency(CigoccError, RuntimeError):
    """An optional teacher package or checkpoint is not available."""


def _require(module: str, pip_name: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(
            f"make-masks needs the optional package '{pip_name}' (pip install {pip_name}) and a "
            f"checkpoint file you downloaded; it is not installed in this environment") from None


def paint_masks(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 index of the mask owning each pixel, -1 for none. Larger masks are painted
    first, so small objects inside large regions (a sign on a building) keep their pixels."""
    owner = np.full(shape, -1, dtype=np.int32)
    order = np.argsort([-int(m.sum()) for m in masks])
    for i in order:  # one assignment per mask (tens per frame), not per pixel
        owner[masks[i]] = i
    return owner


def label_masks_by_votes(owner: np.ndarray, n_masks: int, uv: np.ndarray, point_labels: np.ndarray,
                         min_points: int = 3, min_share: float = 0.5) -> np.ndarray:
    """Class per mask from labelled points: (n_masks,) uint8, IGNORE_LABEL when undecided.

    owner: (H, W) from paint_masks; uv: (N, 2) pixel coordinates of the points; point_labels:
    (N,) training labels (0-19, 255 ignored). A mask takes the majority class of its points when
    it has at least `min_points` of them and the majority holds at least `min_share`.
    """
    H, W = owner.shape
    u = np.floor(uv[:, 0]).astype(np.int64)
    v = np.floor(uv[:, 1]).astype(np.int64)
    ok = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (point_labels != IGNORE_LABEL)
    m = owner[v[ok], u[ok]]
    lab = point_labels[ok].astype(np.int64)
    keep = m >= 0
    votes = np.bincount(m[keep] * NUM_CLASSES + lab[keep], minlength=n_masks * NUM_CLASSES)
    votes = votes.reshape(n_masks, NUM_CLASSES)
    total = votes.sum(1)
    best = votes.argmax(1)
    decided = (total >= min_points) & (votes.max(1) >= min_share * np.maximum(total, 1))
    return np.where(decided, best, IGNORE_LABEL).astype(np.uint8)


def masks_to_class_image(owner: np.ndarray, mask_classes: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class ids from mask ownership and per-mask classes (255 for no mask)."""
    lut = np.append(mask_classes, np.uint8(IGNORE_LABEL))  # index -1 -> last entry
    return lut[owner]


class SamTeacher:
    """SAM automatic masks (+ optional Grounding DINO boxes) for one image at a time."""

    def __init__(self, sam_checkpoint: str, sam_model: str = "vit_h", device: str = "cpu",
                 points_per_side: int = 32, dino_config: str = "", dino_checkpoint: str = ""):
        sa = _require("segment_anything", "segment-anything")
        if not Path(sam_checkpoint).is_file():
            raise MissingDependency(f"{sam_checkpoint}: SAM checkpoint not found")
        try:
            sam = sa.sam_model_registry[sam_model](checkpoint=sam_checkpoint).to(device)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as e:  # what torch.load says of a cut file
            raise MissingDependency(f"{sam_checkpoint}: not a readable SAM {sam_model} checkpoint ({e})") from None
        self.generator = sa.SamAutomaticMaskGenerator(sam, points_per_side=points_per_side)
        self.predictor = sa.SamPredictor(sam)
        self.dino = None
        if dino_config or dino_checkpoint:
            gd = _require("groundingdino.util.inference", "groundingdino-py")
            for f in (dino_config, dino_checkpoint):
                if not Path(f).is_file():
                    raise MissingDependency(f"{f}: Grounding DINO file not found")
            self.dino = (gd, gd.load_model(dino_config, dino_checkpoint, device=device))
        self.device = device

    def automatic_masks(self, image_rgb: np.ndarray) -> list[np.ndarray]:
        return [m["segmentation"] for m in self.generator.generate(image_rgb)]

    def grounded_masks(self, image_rgb: np.ndarray, box_threshold: float = 0.3,
                       text_threshold: float = 0.25) -> tuple[list[np.ndarray], np.ndarray]:
        """Masks and their classes from one Grounding DINO prompt per class."""
        # Only the optional Grounded-SAM path needs these (groundingdino is not a dependency).
        import groundingdino.datasets.transforms as T
        import torch
        from PIL import Image

        gd, model = self.dino
        tf = T.Compose([T.RandomResize([800], max_size=1333), T.ToTensor(),
                        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        img_t, _ = tf(Image.fromarray(image_rgb), None)
        H, W = image_rgb.shape[:2]
        self.predictor.set_image(image_rgb)
        masks, classes = [], []
        for cls, prompt in CLASS_PROMPTS.items():
            boxes, _, _ = gd.predict(model=model, image=img_t, caption=prompt, box_threshold=box_threshold,
                                     text_threshold=text_threshold, device=self.device)
            if len(boxes) == 0:
                continue
            # Grounding DINO boxes are normalised (cx, cy, w, h); SAM wants pixel xyxy.
            b = boxes * torch.tensor([W, H, W, H])
            xyxy = torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1).numpy()
            for box in xyxy:
                m, _, _ = self.predictor.predict(box=box, multimask_output=False)
                masks.append(m[0])
                classes.append(cls)
        return masks, np.array(classes, dtype=np.uint8)


def teacher_mask_for_frame(teacher: SamTeacher, image_rgb: np.ndarray, uv: np.ndarray | None,
                           point_labels: np.ndarray | None) -> np.ndarray:
    """(H, W) uint8 teacher mask of one frame."""
    shape = image_rgb.shape[:2]
    if teacher.dino is not None:
        masks, classes = teacher.grounded_masks(image_rgb)
        if not masks:
            return np.full(shape, IGNORE_LABEL, dtype=np.uint8)
        return masks_to_class_image(paint_masks(masks, shape), classes)
    if uv is None:
        raise MissingDependency("without Grounding DINO, masks are labelled by LiDAR votes: the "
                                "sequence needs velodyne/ and labels/ for this frame")
    masks = teacher.automatic_masks(image_rgb)
    if not masks:
        return np.full(shape, IGNORE_LABEL, dtype=np.uint8)
    owner = paint_masks(masks, shape)
    return masks_to_class_image(owner, label_masks_by_votes(owner, len(masks), uv, point_labels))


def open_sequence(sequence: str | Path, camera: str = "auto") -> tuple[sk.SequencePaths, str, list[Path], dict]:
    """(paths, P key of the camera, its image files, calibration) of a sequence folder;
    DataFormatError / FileNotFoundError naming the file that is missing or bad. Checked for
    every sequence before a teacher model is loaded."""
    seq = sk.SequencePaths.at(sequence)
    p_key, files = seq.camera_images(camera)
    return seq, p_key, files, sk.read_calib(seq.calib, required=(p_key, "Tr"))


def write_teacher_masks(teacher: SamTeacher, sequence: str | Path, camera: str = "auto", every: int = 5,
                        progress: bool = True) -> Path:
    """Teacher masks of every `every`-th frame of a sequence folder into its teacher_masks/;
    frames with velodyne/ and labels/ give LiDAR votes. Returns the folder written."""
    seq, p_key, files, calib = open_sequence(sequence, camera)
    lmap = load_class_table().learning_map
    for f in tqdm(files[:: max(1, every)], desc=f"masks {seq.dir.name}", dynamic_ncols=True, disable=not progress):
        image = sk.read_image(f)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        uv = labels = None
        scan, lab_file = seq.scan(f.stem), seq.point_labels(f.stem)
        if scan.is_file() and lab_file.is_file():
            cam = camera_from_calib(calib[p_key], calib["Tr"], image.shape[:2])
            pts = sk.read_scan(scan)[:, :3]
            raw, _ = sk.read_point_labels(lab_file)
            uv, z = project(pts, cam.K, cam.T_cam_grid)
            front = z > 0.5
            uv, labels = uv[front], lmap[np.minimum(raw[front], len(lmap) - 1)]
        sk.write_teacher_mask(seq.teacher_mask(f.stem), teacher_mask_for_frame(teacher, image, uv, labels))
    return seq.dir / "teacher_masks"
