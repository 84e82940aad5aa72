"""sensor_msgs/Image and sensor_msgs/CompressedImage -> (H, W, 3) uint8 RGB array for the Predictor.

cv_bridge is used when the ROS distribution provides it (PyPI has no ROS 2 cv_bridge, and the
PyPI project `cv-bridge` is a ROS 1 port that breaks on NumPy 2); otherwise our own converter
handles the encodings cameras publish: rgb8, bgr8, rgba8, bgra8, mono8 / 8UC1 (KITTI grayscale is
replicated to 3 channels), 8UC3 (OpenCV order, BGR), mono16 / 16UC1, rgb16, bgr16 (scaled to 8 bit
by the top byte), with row padding (`step` > width * bytes per pixel) and big-endian 16-bit data.
The message is duck-typed (height, width, encoding, is_bigendian, step, data), so rosbags
messages convert too.

CompressedImage (JPEG or PNG, compressed_image_transport's convention) is decoded with OpenCV:
`format` is "<encoding>; <jpeg|png> compressed <encoding>" (or just "jpeg" / "png" from older
publishers); the decoded array is in the order the part after "compressed" names (bgr unless it
says rgb), grayscale is replicated to 3 channels, 16-bit PNG keeps its top byte.
"""
from __future__ import annotations

import cv2
import numpy as np

try:  # pragma: no cover - only on machines with a ROS distribution
    from cv_bridge import CvBridge as _CvBridge
except ImportError:  # pragma: no cover
    _CvBridge = None


class ImageConversionError(ValueError):
    """An Image message that cannot become an RGB array; the text names the field at fault."""


# encoding -> (channels, bytes per channel, channel order as it should be read to get RGB(A))
_LAYOUTS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"),
    "bgr8": (3, 1, "bgr"),
    "8UC3": (3, 1, "bgr"),
    "rgba8": (4, 1, "rgb"),
    "bgra8": (4, 1, "bgr"),
    "8UC4": (4, 1, "bgr"),
    "mono8": (1, 1, "mono"),
    "8UC1": (1, 1, "mono"),
    "rgb16": (3, 2, "rgb"),
    "bgr16": (3, 2, "bgr"),
    "rgba16": (4, 2, "rgb"),
    "bgra16": (4, 2, "bgr"),
    "mono16": (1, 2, "mono"),
    "16UC1": (1, 2, "mono"),
}

SUPPORTED_ENCODINGS = tuple(_LAYOUTS)


def image_to_rgb(msg, use_cv_bridge: bool = True) -> np.ndarray:
    """Convert a sensor_msgs/Image to a C-contiguous (H, W, 3) uint8 RGB array.

    Raises ImageConversionError naming the encoding, size or buffer field that is wrong.
    """
    if use_cv_bridge and _CvBridge is not None:  # pragma: no cover - needs a ROS distribution
        try:
            out = _CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as e:  # cv_bridge raises its own CvBridgeError
            raise ImageConversionError(f"cv_bridge cannot convert encoding '{msg.encoding}': {e}") from None
        return np.ascontiguousarray(out)
    return _convert(msg)


def _convert(msg) -> np.ndarray:
    encoding = str(msg.encoding)
    if encoding not in _LAYOUTS:
        raise ImageConversionError(
            f"unsupported image encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    channels, depth, order = _LAYOUTS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has an empty size: height={height}, width={width}")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageConversionError(
            f"image step {step} is smaller than width*bytes per pixel = {width}*{channels * depth} = {row_bytes}"
        )
    data = msg.data
    try:  # bytes, array.array('B') (rclpy) and numpy buffers are read without a copy
        buf = np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        buf = np.asarray(data, dtype=np.uint8).ravel()
    if buf.size < step * height:
        raise ImageConversionError(
            f"image data has {buf.size} bytes, expected step*height = {step}*{height} = {step * height}"
        )
    # Rows may be padded to `step` bytes: view the buffer as rows and cut the padding off.
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    if depth == 1:
        pix = rows.reshape(height, width, channels)
    else:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        pix16 = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
        pix = (pix16 >> 8).astype(np.uint8)  # keep the top byte: full-range 16-bit -> 8-bit
    if order == "mono":
        return np.ascontiguousarray(np.repeat(pix, 3, axis=2))
    rgb = pix[:, :, :3] if order == "rgb" else pix[:, :, 2::-1]
    return np.ascontiguousarray(rgb)


def compressed_to_rgb(msg) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG / PNG) to a C-contiguous (H, W, 3) uint8 RGB
    array. Raises ImageConversionError naming the format and payload size when it cannot."""
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageConversionError(f"compressed depth images are not camera images (format '{fmt}')")
    data = msg.data
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        buf = np.asarray(data, dtype=np.uint8).ravel()
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise ImageConversionError(f"cannot decode the compressed image (format '{fmt}', {buf.size} bytes)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageConversionError(f"compressed image decodes to {img.dtype}, expected 8 or 16 bit (format '{fmt}')")
    if img.ndim == 2 or img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2))
    rgb_order = "compressed rgb" in fmt.lower()
    img = img[:, :, :3]
    return np.ascontiguousarray(img if rgb_order else img[:, :, ::-1])
