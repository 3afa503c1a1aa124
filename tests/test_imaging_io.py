"""read_image decodes real files and refuses broken ones with CorruptImageError."""

import cv2
import numpy as np
import pytest

from device.errors import CorruptImageError
from device.imaging.io import read_image


def _write_jpeg(path, rgb):
    ok, data = cv2.imencode(".jpg", rgb[..., ::-1])
    assert ok
    path.write_bytes(data.tobytes())
    return data.tobytes()


def test_reads_rgb_in_the_right_channel_order(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    image = read_image(path)
    assert image.shape == (40, 60, 3)
    assert image[..., 0].mean() == 200 and image[..., 2].mean() == 0


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty"), (b"not an image at all", "not a decodable image")],
)
def test_garbage_files_raise(tmp_path, content, words):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(CorruptImageError, match=words):
        read_image(path)


def test_truncated_jpeg_is_detected(tmp_path):
    data = _write_jpeg(tmp_path / "full.jpg", np.full((64, 64, 3), 128, np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match="truncated"):
        read_image(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(CorruptImageError, match="cannot read"):
        read_image(tmp_path / "nope.jpg")
