"""The simulated camera: a folder of images, a video file, or synthetic phantoms.

The live view shows the current image; each still capture returns it at full
size and then moves on to the next, as if the health worker moved to the next
lesion. Faults are injected on cue with :meth:`SimCamera.inject`:

- ``"black"``: the next still is black (lens cap, LED ring off);
- ``"blur"``: the next still is strongly blurred (hand shake);
- ``"exception"``: the next frame request raises CameraError once;
- ``"disconnect"``: every call raises CameraError until ``"reconnect"``.

A file in the folder that cannot be decoded (a text file named ``.jpg``, an
empty file, a truncated JPEG) is skipped: the camera goes on to the next image
and leaves a notice ("unreadable image file NAME: skipped") for the app to show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from device.errors import CameraError, CorruptImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mjpeg")
FAULTS = ("black", "blur", "exception", "disconnect", "reconnect")
PHANTOM_COUNT = 16


def _phantom_source(count: int) -> Callable[[int], np.ndarray]:
    from device.phantoms import sim_phantom

    def frame(index: int) -> np.ndarray:
        return sim_phantom(index % count).image

    return frame


class UnreadableFileError(CameraError):
    """One file of the image folder cannot be decoded; the camera skips it."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"unreadable image file {name}: {reason}")
        self.name = name
        self.reason = reason


def _folder_source(folder: Path) -> tuple[Callable[[int], np.ndarray], int]:
    from device.imaging.io import read_image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CameraError(f"simulated camera: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")

    def frame(index: int) -> np.ndarray:
        path = files[index % len(files)]
        try:
            return read_image(path)
        except CorruptImageError as exc:
            # read_image's message starts with the full path; the notice names the file.
            reason = str(exc).removeprefix(f"{path}: ")
            raise UnreadableFileError(path.name, reason) from exc

    return frame, len(files)


class _VideoSource:
    """Frames of a video file, looping at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise CameraError(f"simulated camera: cannot open video {path}")

    def __call__(self, index: int) -> np.ndarray:
        ok, bgr = self._capture.read()
        if not ok:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._capture.read()
        if not ok or bgr is None:
            raise CameraError(f"simulated camera: video {self.path} gave no frame")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()


class SimCamera:
    """A camera that replays images, with faults on cue.

    Args:
        source: a folder of images, a video file, or None for synthetic phantoms.
        preview_size: the live view fits inside this size (width, height), keeping
            the source's aspect ratio.
        still_size: when given, stills are resized to this (width, height), as a
            real camera's full-resolution stream would deliver them; None keeps
            the source's size.
        start: index of the first image.
    """

    name = "simulated camera"

    def __init__(
        self,
        source: str | Path | None = None,
        preview_size: tuple[int, int] = (640, 480),
        still_size: tuple[int, int] | None = None,
        start: int = 0,
    ) -> None:
        self.source = Path(source) if source else None
        self.preview_size = preview_size
        self.still_size = still_size
        self.index = start
        self.is_open = False
        self.disconnected = False
        self.pending_fault: str | None = None
        self.stills_taken = 0
        self._frame_at: Callable[[int], np.ndarray] | None = None
        self._count = 1
        self._notices: list[str] = []
        self._skipped: set[str] = set()
        self._video: _VideoSource | None = None
        self._current: np.ndarray | None = None
        self._preview: np.ndarray | None = None

    def open(self) -> None:
        """Prepare the source. Raises CameraError while "disconnected" or if the source is bad."""
        if self.disconnected:
            raise CameraError("camera disconnected (simulated)")
        if self.is_open:
            return
        if self.source is None:
            self._frame_at = _phantom_source(PHANTOM_COUNT)
        elif self.source.is_dir():
            self._frame_at, self._count = _folder_source(self.source)
        elif self.source.is_file() and self.source.suffix.lower() in VIDEO_SUFFIXES:
            self._video = _VideoSource(self.source)
            self._frame_at = self._video
        elif self.source.is_file():
            self._frame_at, _ = _folder_source_single(self.source)
        else:
            raise CameraError(f"simulated camera: {self.source} is not a folder or video file")
        self.is_open = True
        self._current = None
        log.info("simulated camera open: %s", self.source or "synthetic phantoms")

    def _read_next_readable(self) -> np.ndarray:
        """The image at :attr:`index`, moving past files that cannot be decoded."""
        assert self._frame_at is not None
        for _ in range(self._count):
            try:
                return self._frame_at(self.index)
            except UnreadableFileError as exc:
                if exc.name not in self._skipped:
                    self._skipped.add(exc.name)
                    self._notices.append(f"unreadable image file {exc.name}: {exc.reason}; skipped")
                    log.warning("simulated camera: %s; skipped", exc)
                self.index += 1
        raise CameraError(f"simulated camera: no readable image in {self.source}")

    def take_notices(self) -> list[str]:
        """Notices about skipped files since the last call (each file is reported once)."""
        notices, self._notices = self._notices, []
        return notices

    def _load(self) -> None:
        """Read the current image (once per image, not per frame)."""
        if self._current is not None:
            return
        self._current = np.ascontiguousarray(self._read_next_readable())
        if self.still_size is not None and self._current.shape[1::-1] != tuple(self.still_size):
            self._current = cv2.resize(
                self._current, tuple(self.still_size), interpolation=cv2.INTER_LINEAR
            )
        height, width = self._current.shape[:2]
        target_w, target_h = self.preview_size
        scale = min(target_w / width, target_h / height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        self._preview = cv2.resize(self._current, size, interpolation=interpolation)

    def inject(self, fault: str) -> None:
        """Arm a fault: "black", "blur", "exception", "disconnect", or "reconnect" to undo it."""
        if fault not in FAULTS:
            raise ValueError(f"unknown camera fault {fault!r}; faults are {', '.join(FAULTS)}")
        log.info("simulated camera: fault %s", fault)
        if fault == "disconnect":
            self.disconnected = True
            self.is_open = False
        elif fault == "reconnect":
            self.disconnected = False
        else:
            self.pending_fault = fault

    def _check(self) -> None:
        if self.disconnected:
            raise CameraError("camera disconnected (simulated)")
        if not self.is_open:
            raise CameraError("camera is not open")
        if self.pending_fault == "exception":
            self.pending_fault = None
            self.is_open = False
            raise CameraError("camera stopped responding (simulated fault)")

    def preview_frame(self) -> np.ndarray:
        """The current image at live-view size, as a new array like a real camera's buffer."""
        self._check()
        self._load()
        assert self._preview is not None
        return self._preview.copy()

    def capture_still(self) -> np.ndarray:
        """The current image at full size (with any armed fault), then advance to the next."""
        self._check()
        self._load()
        assert self._current is not None
        frame = self._current
        fault, self.pending_fault = self.pending_fault, None
        if fault == "black":
            frame = np.zeros_like(frame)
        elif fault == "blur":
            sigma = max(frame.shape[:2]) / 60.0
            frame = cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma)
        self.stills_taken += 1
        # The next image is read when it is next shown, not in this capture's time.
        self.index += 1
        self._current = None
        return frame

    def close(self) -> None:
        """Release the video file, if any."""
        if self._video is not None:
            self._video.close()
            self._video = None
        if self.is_open:
            log.info("simulated camera closed")
        self.is_open = False


def _folder_source_single(path: Path) -> tuple[Callable[[int], np.ndarray], int]:
    from device.imaging.io import read_image

    try:
        image = read_image(path)
    except CorruptImageError as exc:
        raise CameraError(f"simulated camera: {exc}") from exc
    return (lambda index: image), 1
