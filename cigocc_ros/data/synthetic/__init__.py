"""A synthetic SemanticKITTI: procedural street scenes that are not flat, rendered by ray casting
into KITTI's sensors, with exact voxel truth, written in the real SemanticKITTI layout
(docs/synthetic.md states every rule).

Modules, in the order the data flows:
| module | job |
|---|---|
| `scene.py` | what a scene is: terrain profile, roads and ground bands (crown, kerbs), solids, Scene |
| `layout.py` | drawing a scene from a seed: roads, junctions, objects, the ego's poses (`make_scene`) |
| `raycast.py` | exact ray casting of solids and the ground, broad phase per ray bundle |
| `sensors.py` | KITTI's three calibrations, the stereo camera and its shading, the LiDAR |
| `truth.py` | voxel labels, observed space (invalid), the scan's occupancy / free space (occluded) |
| `sequence.py` | `SyntheticSequence`: a seed's frames and labelled frames in memory |
| `writer.py` | `write_sequence`: one sequence on disk, SemanticKITTI layout |
| `default.py` | the default dataset: seeds, split, versioned folder, generate-once (`default_dataset`) |
| `preview.py` | the picture of a frame (`render_preview`, `read_preview`) |

The `cigocc synth` command calls `default_dataset` / `write_sequence` (and `default_root`,
`dataset_complete`); `cigocc preview` calls `render_preview` / `read_preview`.
"""
from .default import (
    DEFAULT_FRAMES,
    DEFAULT_SEEDS,
    DEFAULT_SPLIT,
    FORMAT_VERSION,
    dataset_complete,
    default_dataset,
    default_root,
)
from .layout import LAYOUT_FRAMES, make_scene
from .sensors import KITTI_CALIBRATIONS, calibration_index, kitti_calibration
from .sequence import LABEL_EVERY, RATE_HZ, Frame, SyntheticSequence, VoxelTruth
from .truth import ground_voxels, voxel_labels
from .writer import write_sequence

__all__ = [
    "DEFAULT_FRAMES", "DEFAULT_SEEDS", "DEFAULT_SPLIT", "FORMAT_VERSION", "KITTI_CALIBRATIONS",
    "LABEL_EVERY", "LAYOUT_FRAMES", "RATE_HZ", "Frame", "SyntheticSequence", "VoxelTruth",
    "calibration_index", "dataset_complete", "default_dataset", "default_root", "ground_voxels",
    "kitti_calibration", "make_scene", "voxel_labels", "write_sequence",
]
