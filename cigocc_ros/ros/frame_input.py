"""Checks and conversions that turn a paired set of camera messages into Predictor inputs.

Every problem raises `FrameError` with a text that names the topic field at fault; the node
logs it (throttled per kind), skips the frame and goes on. Intrinsics always come from
camera_info: the rectified projection P (K' = P[:, :3]) when it is set, else K. The pose of the
camera comes from TF or the `camera_from_grid` parameter, never from P: by ROS convention the
left camera's P has no translation and the right camera's P[0, 3] = -fx' * baseline.
"""
from __future__ import annotations

import numpy as np

from ..geometry import stereo_baseline
from .image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb


class FrameError(ValueError):
    """A frame that cannot be used; `kind` groups messages for log throttling."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind


def projection(info) -> np.ndarray:
    """(3, 4) float64 rectified projection of a CameraInfo (P, or [K | 0] when P is all zero)."""
    P = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    if not np.any(P):
        P = np.zeros((3, 4))
        P[:, :3] = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    return P


def intrinsics(info, topic: str) -> np.ndarray:
    """(3, 3) float64 K of the (rectified) image from a CameraInfo, checked."""
    P = projection(info)
    k = np.asarray(info.k, dtype=np.float64)
    if not (np.all(np.isfinite(P)) and np.all(np.isfinite(k))):
        bad = "P" if not np.all(np.isfinite(P)) else "K"
        shown = P.ravel() if bad == "P" else k
        raise FrameError("camera_info_nan", f"{topic}: camera_info P/K holds NaN or inf ({bad} = {shown.tolist()})")
    K = P[:, :3].copy()
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
        raise FrameError(
            "camera_info_invalid",
            f"{topic}: camera_info has no usable intrinsics (fx={K[0, 0]}, fy={K[1, 1]}, K[2,2]={K[2, 2]})",
        )
    return K


def check_size(image, info, image_topic: str, info_topic: str) -> None:
    """Raise FrameError when the image size differs from camera_info's width/height. `image` is
    an Image message or a decoded (H, W, ...) array (a CompressedImage has no size fields)."""
    if int(info.width) == 0 or int(info.height) == 0:
        raise FrameError("camera_info_size", f"{info_topic}: camera_info has no image size (width/height 0)")
    if isinstance(image, np.ndarray):
        height, width = image.shape[:2]
    else:
        height, width = int(image.height), int(image.width)
    if (int(width), int(height)) != (int(info.width), int(info.height)):
        raise FrameError(
            "size_mismatch",
            f"{image_topic}: image is {width}x{height} but {info_topic} says {info.width}x{info.height}",
        )


# The model crops or zero-pads a frame to its input size (geometry.crop_or_pad), it never scales.
# Refuse a frame when padding would fill more than MAX_PAD_FRACTION of the input's rows or
# columns (the grid would be predicted from mostly black pixels); warn once per image size when
# more than FIT_WARN_FRACTION of the rows or columns are cropped or padded.
MAX_PAD_FRACTION = 0.5
FIT_WARN_FRACTION = 0.1


def check_image_fits(image_hw, K: np.ndarray, model_hw, image_topic: str, info_topic: str) -> str | None:
    """Raise FrameError when an image of size `image_hw` = (H, W) cannot belong to its
    camera_info (principal point outside it) or is far smaller than the model input `model_hw`
    = (h, w); return a warning text when it is cropped / padded by more than FIT_WARN_FRACTION,
    else None."""
    H, W = (int(v) for v in image_hw)
    h, w = (int(v) for v in model_hw)
    cx, cy = float(K[0, 2]), float(K[1, 2])
    if not (0.0 <= cx <= W and 0.0 <= cy <= H):
        raise FrameError(
            "intrinsics_size",
            f"{image_topic}: a {W}x{H} image cannot match {info_topic}: its principal point "
            f"({cx:g}, {cy:g}) lies outside the image",
        )
    pad = max((h - H) / h, (w - W) / w)
    if pad > MAX_PAD_FRACTION:
        raise FrameError(
            "image_too_small",
            f"{image_topic}: a {W}x{H} image is far smaller than the model input {w}x{h}: "
            f"{pad:.0%} of its rows or columns would be zero padding (limit {MAX_PAD_FRACTION:.0%})",
        )
    change = max(abs(H - h) / h, abs(W - w) / w)
    if change > FIT_WARN_FRACTION:
        verb = "padded" if pad > 0 and max(H - h, W - w) <= 0 else "cropped" if pad <= 0 else "cropped and padded"
        return (f"{image_topic}: {W}x{H} images are {verb} to the model input {w}x{h} ({change:.0%} of the rows "
                f"or columns; more than {FIT_WARN_FRACTION:.0%} degrades the prediction)")
    return None


def is_compressed(image) -> bool:
    """True for a sensor_msgs/CompressedImage (it has `format`, an Image has `encoding`)."""
    return hasattr(image, "format") and not hasattr(image, "encoding")


def to_rgb(image, info, image_topic: str, info_topic: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an Image or CompressedImage checked against its camera_info's
    size; FrameError on an unusable encoding, buffer or payload, or a size mismatch."""
    if is_compressed(image):
        try:
            rgb = compressed_to_rgb(image)
        except ImageConversionError as e:
            raise FrameError("image_decode", f"{image_topic}: {e}") from None
        check_size(rgb, info, image_topic, info_topic)
        return rgb
    check_size(image, info, image_topic, info_topic)  # before converting: cheap
    try:
        return image_to_rgb(image)
    except ImageConversionError as e:
        raise FrameError("image_encoding", f"{image_topic}: {e}") from None


# A stereo rig's baseline, metres. Below the minimum the pair cannot measure depth in the model's
# range (1 cm at fx 720 px gives 3.6 px of disparity at 2 m and 0.1 px at 58 m): a camera_info
# whose right P[0, 3] was copied from the left one yields a few millimetres from P's other
# columns (KITTI's colour P2/P3 carry P[1, 3], P[2, 3]), not zero. Above the maximum no vehicle
# rig exists; a P[0, 3] in millimetres or pixels instead of fx * metres gives such values.
MIN_BASELINE = 0.01
MAX_BASELINE = 2.0


def baseline(left_info, right_info, topic: str) -> float:
    """Stereo baseline (m) of the rectified pair: the x offset between the two cameras that
    their projections P = K [I | t] give (geometry.stereo_baseline; the ROS convention is right
    P[0, 3] = -fx' * B with left P[0, 3] = 0). FrameError "stereo_baseline" naming the value
    unless MIN_BASELINE <= B <= MAX_BASELINE."""
    Pl, Pr = projection(left_info), projection(right_info)
    with np.errstate(all="ignore"):  # a singular P gives inf/nan, refused below
        try:
            b = stereo_baseline(Pl, Pr)
        except np.linalg.LinAlgError:
            b = float("nan")
    if not (np.isfinite(b) and MIN_BASELINE <= b <= MAX_BASELINE):
        raise FrameError(
            "stereo_baseline",
            f"{topic}: stereo baseline {b:.6g} m is outside [{MIN_BASELINE:g}, {MAX_BASELINE:g}] m (right "
            f"camera_info P[0,3]={Pr[0, 3]:.6g}, left P[0,3]={Pl[0, 3]:.6g}; expected right P[0,3] = "
            "left P[0,3] - fx * baseline)",
        )
    return float(b)


def matrix_from_parameter(values) -> np.ndarray | None:
    """Row-major 16 numbers -> (4, 4) float64, or None when the parameter is empty."""
    if not values:
        return None
    return np.asarray(values, dtype=np.float64).reshape(4, 4)
