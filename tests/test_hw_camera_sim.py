"""The simulated camera: phantoms, folders, videos, and faults on cue."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.errors import CameraError
from device.hw.camera import Camera, make_camera
from device.hw.camera_sim import SimCamera
from device.imaging.quality import QualityThresholds, assess_quality
from device.phantoms import sim_phantom


def test_default_source_is_phantoms_and_still_advances():
    camera = SimCamera()
    camera.open()
    first = camera.capture_still()
    assert np.array_equal(first, sim_phantom(0).image)
    second = camera.capture_still()
    assert np.array_equal(second, sim_phantom(1).image)
    assert camera.stills_taken == 2


def test_preview_is_the_current_image_scaled_to_preview_size():
    camera = SimCamera(preview_size=(320, 240))
    camera.open()
    preview = camera.preview_frame()
    assert preview.shape == (240, 320, 3) and preview.dtype == np.uint8
    # The live view shows what the next still will be.
    still = camera.capture_still()
    expected = cv2.resize(still, (320, 240), interpolation=cv2.INTER_AREA)
    assert np.abs(preview.astype(int) - expected).max() <= 1


def test_folder_source_cycles_sorted_images(tmp_path):
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        image = np.zeros((60, 80, 3), np.uint8)
        image[:] = colour
        cv2.imwrite(str(tmp_path / f"{i}.png"), image[..., ::-1])
    (tmp_path / "notes.txt").write_text("not an image")
    camera = SimCamera(source=tmp_path)
    camera.open()
    stills = [camera.capture_still()[0, 0].tolist() for _ in range(3)]
    assert stills == [[255, 0, 0], [0, 255, 0], [255, 0, 0]]


def test_empty_folder_is_a_camera_error(tmp_path):
    with pytest.raises(CameraError, match="no images"):
        SimCamera(source=tmp_path).open()


def test_missing_source_is_a_camera_error(tmp_path):
    with pytest.raises(CameraError, match="not a folder or video"):
        SimCamera(source=tmp_path / "absent").open()


def test_video_source_loops(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV here cannot write MJPG video")
    for value in (40, 200):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    camera = SimCamera(source=path)
    camera.open()
    levels = [int(camera.capture_still().mean()) for _ in range(3)]
    camera.close()
    assert abs(levels[0] - 40) < 10 and abs(levels[1] - 200) < 10 and abs(levels[2] - 40) < 10


def test_black_fault_makes_one_black_still_that_fails_the_gate():
    camera = SimCamera()
    camera.open()
    camera.inject("black")
    still = camera.capture_still()
    assert still.max() == 0
    assert not assess_quality(still, QualityThresholds()).passed
    assert camera.capture_still().max() > 0  # only once


def test_blur_fault_fails_the_gate_as_blurred():
    camera = SimCamera()
    camera.open()
    sharp = assess_quality(camera.preview_frame(), QualityThresholds())
    assert sharp.passed
    camera.inject("blur")
    report = assess_quality(camera.capture_still(), QualityThresholds())
    assert not report.passed
    assert any("blurred" in reason for reason in report.reasons)


def test_exception_fault_raises_once_then_reopens():
    camera = SimCamera()
    camera.open()
    camera.inject("exception")
    with pytest.raises(CameraError):
        camera.preview_frame()
    with pytest.raises(CameraError, match="not open"):
        camera.preview_frame()
    camera.open()
    assert camera.preview_frame().ndim == 3


def test_disconnect_lasts_until_reconnect():
    camera = SimCamera()
    camera.open()
    camera.inject("disconnect")
    with pytest.raises(CameraError, match="disconnected"):
        camera.capture_still()
    with pytest.raises(CameraError, match="disconnected"):
        camera.open()
    camera.inject("reconnect")
    camera.open()
    assert camera.capture_still().ndim == 3


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown camera fault"):
        SimCamera().inject("smoke")


def test_factory_builds_each_backend_without_opening_it():
    for backend in ("pi", "usb", "sim"):
        camera = make_camera(backend)
        assert isinstance(camera, Camera)
    with pytest.raises(CameraError, match="unknown camera backend"):
        make_camera("firewire")


def test_stills_can_be_delivered_at_the_real_camera_resolution():
    camera = SimCamera(preview_size=(640, 480), still_size=(2028, 1520))
    camera.open()
    assert camera.preview_frame().shape == (480, 640, 3)
    assert camera.capture_still().shape == (1520, 2028, 3)


def _bad_files(folder) -> None:
    """A text file named .jpg, an empty file and a truncated JPEG."""
    (folder / "a-text.jpg").write_text("these are my notes, not a photo")
    (folder / "b-empty.png").write_bytes(b"")
    good = np.full((60, 80, 3), (200, 40, 40), np.uint8)
    ok, data = cv2.imencode(".jpg", good)
    assert ok
    (folder / "c-truncated.jpg").write_bytes(data.tobytes()[: len(data) // 2])


def test_unreadable_files_are_skipped_with_a_notice(tmp_path):
    _bad_files(tmp_path)
    image = np.full((60, 80, 3), (20, 200, 40), np.uint8)
    cv2.imwrite(str(tmp_path / "d-good.png"), image[..., ::-1])
    camera = SimCamera(source=tmp_path)
    camera.open()
    assert camera.preview_frame()[0, 0].tolist() == [20, 200, 40]
    notices = camera.take_notices()
    assert [n.split(":")[0] for n in notices] == [
        "unreadable image file a-text.jpg",
        "unreadable image file b-empty.png",
        "unreadable image file c-truncated.jpg",
    ]
    assert "skipped" in notices[0]
    assert camera.take_notices() == []  # each notice is given once
    # The still is the good image; the next loop over the folder skips the bad ones again.
    assert camera.capture_still()[0, 0].tolist() == [20, 200, 40]
    assert camera.capture_still()[0, 0].tolist() == [20, 200, 40]


def test_a_folder_of_only_unreadable_files_is_a_camera_error(tmp_path):
    _bad_files(tmp_path)
    camera = SimCamera(source=tmp_path)
    camera.open()
    with pytest.raises(CameraError, match="no readable image"):
        camera.preview_frame()
