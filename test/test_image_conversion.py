"""Our sensor_msgs/Image -> RGB converter: every encoding, row padding, 16-bit, clear errors."""
from __future__ import annotations

import array
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image

from cigocc_ros.ros.image_conversion import ImageConversionError, image_to_rgb

REPO = Path(__file__).resolve().parent.parent
KITTI = Path(os.environ.get("CIGOCC_KITTI_SAMPLES", REPO.parent / "shared" / "kitti_samples"))


def make_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An rclpy Image holding `pixels` (H, W[, C]) with `pad` garbage bytes after each row."""
    h, w = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    rows = pixels.reshape(h, -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1])
    msg.data = array.array("B", rows.tobytes())
    return msg


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def test_rgb8_and_bgr8(rgb):
    assert np.array_equal(image_to_rgb(make_msg(rgb, "rgb8"), use_cv_bridge=False), rgb)
    bgr = rgb[:, :, ::-1].copy()
    assert np.array_equal(image_to_rgb(make_msg(bgr, "bgr8"), use_cv_bridge=False), rgb)
    assert np.array_equal(image_to_rgb(make_msg(bgr, "8UC3"), use_cv_bridge=False), rgb)


def test_four_channel_encodings_drop_alpha(rgb):
    alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=2)
    bgra = np.concatenate([rgb[:, :, ::-1], alpha], axis=2)
    assert np.array_equal(image_to_rgb(make_msg(rgba, "rgba8"), use_cv_bridge=False), rgb)
    assert np.array_equal(image_to_rgb(make_msg(bgra, "bgra8"), use_cv_bridge=False), rgb)


def test_mono8_becomes_three_equal_channels():
    mono = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = image_to_rgb(make_msg(mono, "mono8"), use_cv_bridge=False)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    for c in range(3):
        assert np.array_equal(out[:, :, c], mono)


def test_row_padding_is_cut_off(rgb):
    out = image_to_rgb(make_msg(rgb, "rgb8", pad=5), use_cv_bridge=False)
    assert np.array_equal(out, rgb)
    mono = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(image_to_rgb(make_msg(mono, "mono8", pad=1), use_cv_bridge=False)[:, :, 1], mono)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_16bit_mono_keeps_top_byte(encoding, bigendian):
    mono = np.array([[0, 255, 256, 65535], [4096, 1000, 30000, 512]], dtype=np.uint16)
    out = image_to_rgb(make_msg(mono, encoding, pad=2, bigendian=bigendian), use_cv_bridge=False)
    assert np.array_equal(out[:, :, 0], (mono >> 8).astype(np.uint8))
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_bgr16():
    rgb16 = np.random.default_rng(1).integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    out = image_to_rgb(make_msg(rgb16[:, :, ::-1].copy(), "bgr16"), use_cv_bridge=False)
    assert np.array_equal(out, (rgb16 >> 8).astype(np.uint8))


def test_real_kitti_grayscale_frame(kitti_samples):
    path = kitti_samples / "sequences" / "00" / "image_0" / "000000.png"
    gray = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2 and gray.shape == (376, 1241)
    out = image_to_rgb(make_msg(gray, "mono8"), use_cv_bridge=False)
    assert out.shape == (376, 1241, 3)
    assert np.array_equal(out[:, :, 0], gray) and np.array_equal(out[:, :, 2], gray)


def test_bytes_data_from_other_readers(rgb):
    """rosbags and raw readers hand `data` as bytes or a numpy array rather than array.array."""
    msg = make_msg(rgb, "rgb8")

    class Plain:
        height, width, encoding, is_bigendian, step = msg.height, msg.width, "rgb8", 0, msg.step
        data = np.frombuffer(bytes(msg.data), np.uint8)

    assert np.array_equal(image_to_rgb(Plain(), use_cv_bridge=False), rgb)


def test_unsupported_encoding_is_named(rgb):
    msg = make_msg(rgb, "rgb8")
    msg.encoding = "bayer_rggb8"
    with pytest.raises(ImageConversionError, match="bayer_rggb8"):
        image_to_rgb(msg, use_cv_bridge=False)


def test_short_buffer_and_bad_step_are_reported(rgb):
    msg = make_msg(rgb, "rgb8")
    msg.data = array.array("B", bytes(msg.data)[:-1])
    with pytest.raises(ImageConversionError, match="expected step\\*height"):
        image_to_rgb(msg, use_cv_bridge=False)
    msg = make_msg(rgb, "rgb8")
    msg.step = 7 * 3 - 1
    with pytest.raises(ImageConversionError, match="step 20 is smaller"):
        image_to_rgb(msg, use_cv_bridge=False)
    msg = make_msg(rgb, "rgb8")
    msg.height = 0
    with pytest.raises(ImageConversionError, match="empty size"):
        image_to_rgb(msg, use_cv_bridge=False)


# ------------------------------------------------------------------------------ CompressedImage
def compressed(pixels_bgr: np.ndarray, kind: str, fmt: str):
    from sensor_msgs.msg import CompressedImage

    ok, buf = cv2.imencode(f".{kind}", pixels_bgr)
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", buf.tobytes())
    return msg


def test_compressed_png_is_lossless_in_every_layout():
    from cigocc_ros.ros.image_conversion import compressed_to_rgb

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert np.array_equal(compressed_to_rgb(compressed(bgr, "png", "bgr8; png compressed bgr8")), rgb)
    assert np.array_equal(compressed_to_rgb(compressed(bgr, "png", "png")), rgb)  # old publishers
    # compressed_image_transport stores an rgb8 image as "compressed rgb8": the array is RGB.
    assert np.array_equal(compressed_to_rgb(compressed(rgb, "png", "rgb8; png compressed rgb8")), rgb)
    mono = rgb[:, :, 0].copy()
    out = compressed_to_rgb(compressed(mono, "png", "mono8; png compressed mono8"))
    assert out.shape == (9, 11, 3) and all(np.array_equal(out[:, :, c], mono) for c in range(3))
    mono16 = mono.astype(np.uint16) * 257
    assert np.array_equal(compressed_to_rgb(compressed(mono16, "png", "mono16; png compressed mono16"))[:, :, 0], mono)
    bgra = np.concatenate([bgr, np.full((9, 11, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(compressed_to_rgb(compressed(bgra, "png", "bgra8; png compressed bgra8")), rgb)


def test_compressed_jpeg_of_a_real_frame_is_close(kitti_samples):
    from cigocc_ros.ros.image_conversion import compressed_to_rgb

    bgr = cv2.imread(str(kitti_samples / "sequences" / "00" / "image_2" / "000000.png"), cv2.IMREAD_COLOR)
    out = compressed_to_rgb(compressed(bgr, "jpg", "bgr8; jpeg compressed bgr8"))
    assert out.shape == bgr.shape and out.flags.c_contiguous
    err = np.abs(out.astype(int) - bgr[:, :, ::-1].astype(int)).mean()  # OpenCV's JPEG quality 95
    swapped = np.abs(out.astype(int) - bgr.astype(int)).mean()
    assert err < 6.0 and swapped > 2 * err, (err, swapped)


def test_bad_compressed_payloads_are_clear_errors():
    from sensor_msgs.msg import CompressedImage

    from cigocc_ros.ros.image_conversion import compressed_to_rgb

    garbage = CompressedImage(format="bgr8; jpeg compressed bgr8")
    garbage.data = array.array("B", os.urandom(300))
    with pytest.raises(ImageConversionError, match=r"cannot decode the compressed image \(format 'bgr8; jpeg"):
        compressed_to_rgb(garbage)
    with pytest.raises(ImageConversionError, match="300 bytes"):
        compressed_to_rgb(garbage)
    with pytest.raises(ImageConversionError, match="0 bytes"):
        compressed_to_rgb(CompressedImage(format="png"))
    depth = compressed(np.zeros((4, 4), np.uint16), "png", "16UC1; compressedDepth png")
    with pytest.raises(ImageConversionError, match="compressed depth"):
        compressed_to_rgb(depth)
