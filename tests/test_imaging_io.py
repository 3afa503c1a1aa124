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


def _smooth_jpeg(path, width, height):
    small = (np.random.default_rng(0).uniform(0, 255, (12, 16, 3))).astype(np.uint8)
    rgb = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return _write_jpeg(path, rgb), rgb


def test_a_huge_jpeg_is_scaled_down_on_read(tmp_path):
    _, rgb = _smooth_jpeg(tmp_path / "big.jpg", 2400, 1800)
    image = read_image(tmp_path / "big.jpg", max_side=500)
    assert image.shape == (375, 500, 3)
    expected = cv2.resize(rgb, (500, 375), interpolation=cv2.INTER_AREA)
    assert np.abs(image.astype(int) - expected).mean() < 3


def test_images_within_the_limit_are_read_unchanged(tmp_path):
    _smooth_jpeg(tmp_path / "ham.jpg", 600, 450)
    direct = cv2.cvtColor(cv2.imread(str(tmp_path / "ham.jpg")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(read_image(tmp_path / "ham.jpg"), direct)


def test_header_sizes_are_read_without_decoding(tmp_path):
    from device.imaging.io import jpeg_size, png_size, reduction_for

    data, _ = _smooth_jpeg(tmp_path / "a.jpg", 640, 480)
    assert jpeg_size(data) == (640, 480)
    _, png = cv2.imencode(".png", np.zeros((30, 50, 3), np.uint8))
    assert png_size(png.tobytes()) == (50, 30)
    assert reduction_for(12000, 9000) == 4 and reduction_for(40000, 30000) == 8
    assert reduction_for(4096, 3072) == 2 and reduction_for(2048, 1536) == 1


def test_absurd_sizes_are_refused_from_the_header(tmp_path):
    from device.errors import ImageError

    data, _ = _smooth_jpeg(tmp_path / "a.jpg", 64, 48)
    # Claim 30000x30000 in the start-of-frame header: refused before any decoding.
    marker = data.index(b"\xff\xc0")
    forged = bytearray(data)
    forged[marker + 5 : marker + 9] = (30000).to_bytes(2, "big") * 2
    (tmp_path / "forged.jpg").write_bytes(bytes(forged))
    with pytest.raises(ImageError, match=r"too large: 30000x30000 pixels \(900 MP; at most 400"):
        read_image(tmp_path / "forged.jpg")
    png = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    png[16:24] = (9000).to_bytes(4, "big") * 2
    (tmp_path / "big.png").write_bytes(bytes(png))
    with pytest.raises(ImageError, match=r"9000x9000 pixels \(81 MP; at most 40 MP\)"):
        read_image(tmp_path / "big.png")


def test_reading_a_12000x9000_jpeg_stays_within_the_memory_target(tmp_path):
    """The issue's file: peak RSS was 784 MB through the simulator; the target is 300 MB."""
    import subprocess
    import sys

    path = tmp_path / "huge.jpg"
    write = (
        "import cv2, numpy as np; s = np.random.default_rng(0).uniform(0, 255, (12, 16, 3));"
        f"cv2.imwrite({str(path)!r}, cv2.resize(s.astype(np.uint8), (12000, 9000)))"
    )
    subprocess.run([sys.executable, "-c", write], check=True, timeout=120)
    measure = (
        "import resource; from device.imaging.io import read_image;"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        f"image = read_image({str(path)!r});"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "print(image.shape[1], image.shape[0], (peak - base) // 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", measure], check=True, capture_output=True, text=True, timeout=120
    ).stdout.split()
    width, height, growth_mb = (int(v) for v in out)
    assert (width, height) == (2048, 1536)
    assert growth_mb < 60, f"reading grew the process by {growth_mb} MB"
